//! The fake Mantle as a process, for the SDK tests, benchmarks and local stacks:
//! `fake-mantle 127.0.0.1:5060 [--enforce-iam MOTO_URL]`, then
//! `STRATA_MANTLE_URL=http://127.0.0.1:5060/{region}/v1`. With `--enforce-iam`, every
//! SigV4-signed inference call is authorized against its role's policies in that moto.

use strata_testkit::FakeMantle;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:5060".to_owned();
    let mut moto: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--enforce-iam" => match args.next() {
                Some(url) => moto = Some(url),
                None => {
                    eprintln!("--enforce-iam needs the moto server's URL");
                    std::process::exit(2);
                }
            },
            other => other.clone_into(&mut addr),
        }
    }
    let fake = FakeMantle::start_on(&addr).await;
    if let Some(url) = &moto {
        fake.enforce_iam(url);
    }
    println!("fake Mantle at {}", fake.url());
    let _ = tokio::signal::ctrl_c().await;
    let creates = fake.calls("CreateProject");
    println!("CreateProject calls: {creates}");
}
