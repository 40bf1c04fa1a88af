fn main() -> std::process::ExitCode {
    promfed::main()
}
