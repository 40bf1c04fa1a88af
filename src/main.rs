fn main() -> std::process::ExitCode {
    promfed::cli::main()
}
