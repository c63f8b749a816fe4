//! The `gatehouse` binary.

/// mimalloc instead of the C library's allocator: a request allocates and frees about a
/// hundred small blocks across the runtime's threads, and glibc's malloc/free were about
/// a quarter of the server's instructions per ext_authz Check (issue 15). See
/// [`gatehouse::alloc`] for how it is called.
#[global_allocator]
static GLOBAL: gatehouse::alloc::Mimalloc = gatehouse::alloc::Mimalloc;

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
