fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = clusterctl::main_with_args(&args, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::exit(code as i32);
}
