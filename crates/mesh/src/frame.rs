//! What travels on a connection: length-delimited frames (a 4-byte length, then that
//! many bytes of borsh), each at most [`MAX_FRAME_BYTES`]; a larger length ends the
//! connection before a byte of it is buffered.

use borsh::{BorshDeserialize, BorshSerialize};

/// The version of the mesh protocol; a peer that speaks another is refused at the
/// handshake, with both versions in the log.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame a peer may send.
pub const MAX_FRAME_BYTES: usize = 1024 * 1024;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum Frame {
    /// The first frame each side sends: who it is and which protocol it speaks.
    Hello {
        /// [`PROTOCOL_VERSION`] of the sender.
        version: u32,
        /// The sender's account.
        account_id: String,
    },
    /// Liveness: each side sends one every second, and any frame counts as a sign of
    /// life, so no answer is needed.
    Ping,
    /// The sender is stopping: the receiver closes the connection at once instead of
    /// waiting for a timeout.
    Goodbye,
    /// A message for the layer above.
    Data(Vec<u8>),
}

impl Frame {
    /// The frame's bytes.
    pub fn encode(&self) -> bytes::Bytes {
        borsh::to_vec(self).expect("serialising into a Vec cannot fail").into()
    }

    /// The frame's kind, for logs (never its contents).
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "hello",
            Frame::Ping => "ping",
            Frame::Goodbye => "goodbye",
            Frame::Data(_) => "data",
        }
    }

    /// A frame from its bytes.
    pub fn decode(bytes: &[u8]) -> Result<Frame, String> {
        Frame::try_from_slice(bytes).map_err(|err| format!("not a frame: {err}"))
    }
}

/// The codec of frames on a stream.
pub fn codec() -> tokio_util::codec::LengthDelimitedCodec {
    tokio_util::codec::LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME_BYTES).new_codec()
}
