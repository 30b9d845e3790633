fn main() -> std::process::ExitCode {
    grantline::cli::main()
}
