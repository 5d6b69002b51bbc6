//! How the smee relay rides out an outage: reconnect delay after the
//! channel returns, and how many deliveries the catch-up sweep recovered,
//! for a 15 s and a 5 min outage, comments arriving 5 a second throughout
//! (crates/test-kit `outage_drill`: the real relay, fake smee, fake GitHub).
//!
//!     cargo run --release --example relay_outage [OUTAGE_SECS...]
//!
//! Prints figures only; nothing is asserted here.

use std::time::Duration;

use ember_ci_test_kit::outage_drill::Drill;

#[tokio::main]
async fn main() {
    let outages: Vec<u64> = std::env::args()
        .skip(1)
        .map(|arg| arg.parse().expect("outage lengths are whole seconds"))
        .collect();
    let outages = if outages.is_empty() {
        vec![15, 300]
    } else {
        outages
    };
    println!("outage_s  reconnect_s  created  during_outage~  received  recovered_by_catch_up  lost  duplicates");
    for secs in outages {
        let drill = Drill {
            outage: Duration::from_secs(secs),
            comment_every: Duration::from_millis(200),
            settle: Duration::from_secs(3),
        };
        let report = drill.run().await;
        println!(
            "{secs:>8}  {:>11.2}  {:>7}  {:>14}  {:>8}  {:>21}  {:>4}  {:>10}",
            report.reconnect.as_secs_f64(),
            report.created.len(),
            secs * 5,
            report.received.len(),
            report.recovered,
            report.lost().len(),
            report.duplicates(),
        );
    }
}
