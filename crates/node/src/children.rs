//! Child processes under a supervisor, as `localnet` runs them: each in its own process
//! group (a Ctrl-C in the terminal reaches the supervisor only, which stops the
//! children in order) and sent SIGTERM by the kernel if the supervisor dies, restarted
//! when they fail like `restart: on-failure`, stopped with SIGTERM and reaped by pid.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// First pause before a failed child is started again; it doubles up to
/// [`LONGEST_RESTART_PAUSE`], and starts over once a child ran [`STABLE_RUN`].
const FIRST_RESTART_PAUSE: Duration = Duration::from_secs(1);
/// Longest pause before a restart.
const LONGEST_RESTART_PAUSE: Duration = Duration::from_secs(30);
/// A child that ran this long counts as healthy again.
const STABLE_RUN: Duration = Duration::from_secs(60);

/// How a child ended, as an operator reads it.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".to_owned(),
    }
}

/// One supervised child.
pub struct SupervisedChild {
    /// Its name in what is printed (`node-1`).
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    process: Option<std::process::Child>,
    started: Instant,
    pause: Duration,
    restart_at: Option<Instant>,
}

/// What happened to a child since it was last looked at.
pub enum ChildEvent {
    /// It ended on its own and is started again at the instant.
    WillRestart { how: String, after: Duration },
    /// It ended on its own with exit 0, which is not a failure: it stays stopped.
    Stopped { how: String },
    /// It was started (again).
    Started { pid: u32 },
}

impl SupervisedChild {
    /// A child running `program args`, its stdout and stderr appended to `log`.
    pub fn new(name: &str, program: PathBuf, args: Vec<String>, log: PathBuf) -> Self {
        SupervisedChild {
            name: name.to_owned(),
            program,
            args,
            log,
            process: None,
            started: Instant::now(),
            pause: FIRST_RESTART_PAUSE,
            restart_at: None,
        }
    }

    /// Starts the process.
    pub fn start(&mut self) -> std::io::Result<u32> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
        // SAFETY: prctl(2) only sets a flag of the new process; it allocates nothing and
        // is async-signal-safe, as a pre_exec hook requires.
        unsafe {
            command.pre_exec(|| {
                // The kernel sends SIGTERM to the child if this process dies (even by
                // SIGKILL), so no child outlives its supervisor.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        let pid = child.id();
        self.process = Some(child);
        self.started = Instant::now();
        self.restart_at = None;
        Ok(pid)
    }

    /// The pid of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(std::process::Child::id)
    }

    /// Reaps the process if it ended, starts it again when its pause is over.
    pub fn supervise(&mut self) -> std::io::Result<Option<ChildEvent>> {
        if let Some(process) = &mut self.process {
            let Some(status) = process.try_wait()? else { return Ok(None) };
            self.process = None;
            let how = describe_exit(status);
            if status.success() {
                return Ok(Some(ChildEvent::Stopped { how }));
            }
            if self.started.elapsed() >= STABLE_RUN {
                self.pause = FIRST_RESTART_PAUSE;
            }
            let after = self.pause;
            self.pause = (self.pause * 2).min(LONGEST_RESTART_PAUSE);
            self.restart_at = Some(Instant::now() + after);
            return Ok(Some(ChildEvent::WillRestart { how, after }));
        }
        match self.restart_at {
            Some(at) if at <= Instant::now() => Ok(Some(ChildEvent::Started { pid: self.start()? })),
            _ => Ok(None),
        }
    }

    /// Sends SIGTERM to the running process (no pending restart any more).
    pub fn terminate(&mut self) {
        self.restart_at = None;
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on the pid of a child this process has not reaped yet, so
            // the pid cannot have been reused.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    /// Waits up to `bound` for the process to end after [`SupervisedChild::terminate`];
    /// SIGKILLs it past the bound. Returns how it ended (`None` if it was not running).
    pub async fn wait_stopped(&mut self, bound: Duration) -> std::io::Result<Option<(ExitStatus, bool)>> {
        let Some(process) = &mut self.process else { return Ok(None) };
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = process.try_wait()? {
                self.process = None;
                return Ok(Some((status, false)));
            }
            if Instant::now() >= deadline {
                process.kill()?;
                let status = process.wait()?;
                self.process = None;
                return Ok(Some((status, true)));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SupervisedChild {
    /// A child still running when its supervisor lets go of it is killed and reaped.
    fn drop(&mut self) {
        if let Some(process) = &mut self.process {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}
