//! `mpc-node`: the binary. Everything it does is in the library ([`mpc_node::main`]);
//! what must be in the binary itself is here: the allocator and the constructor that
//! defers the operator signals before `main`.

/// The allocator: jemalloc. On the indexing path the view client allocates each
/// block's views on its thread and `listen_blocks` frees them on another; with glibc's
/// per-thread arenas that free was as costly as the commits, and glibc also kept more
/// of the memory of each restart's threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Blocks the operator signals before `main` runs (from the ELF `.init_array`, right
/// after the dynamic loader). In the binary, not the library: a linker keeps a
/// library's `#[used]` static only if something else pulls in its object file.
#[used]
#[unsafe(link_section = ".init_array")]
static DEFER_OPERATOR_SIGNALS_BEFORE_MAIN: extern "C" fn() = mpc_node::defer_operator_signals_before_main;

fn main() {
    mpc_node::main()
}
