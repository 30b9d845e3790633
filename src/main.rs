fn main() -> std::process::ExitCode {
    // flushes the spans still batched for export once the command is done
    let _traces = grantline::telemetry::flush_on_drop();
    grantline::cli::main()
}
