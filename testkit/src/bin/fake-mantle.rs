//! The fake Mantle Projects API as a process, for benchmarks and local stacks:
//! `fake-mantle 127.0.0.1:5060`, then `STRATA_MANTLE_URL=http://127.0.0.1:5060/{region}/v1`.

use strata_testkit::FakeMantle;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5060".to_owned());
    let fake = FakeMantle::start_on(&addr).await;
    println!("fake Mantle at {}", fake.url());
    let _ = tokio::signal::ctrl_c().await;
    let creates = fake.calls("CreateProject");
    println!("CreateProject calls: {creates}");
}
