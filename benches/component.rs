//! Component JSON load-and-build time: parsing a stored team component from its JSON text
//! into a `ComponentModel`, and `Registry::build_team`, which the engine calls once per run
//! (and `POST /team` once per team, to validate it).
//!
//! ```text
//! cargo bench --bench component
//! ```
//!
//! The components have the shape AutoGen 0.7 dumps, with OpenAI model clients as the
//! tutorial stores them; building one makes no network call.

// A panic is how a criterion benchmark reports a broken setup.
#![allow(clippy::expect_used)]

mod teams;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use aegis::core::ComponentModel;
use aegis::core::registry::Overrides;
use aegis::{ProviderEnv, Registry};

fn component(c: &mut Criterion) {
    let registry = Registry::with_builtins(ProviderEnv::default());
    let overrides = Overrides::default();
    let components = [
        ("automarking_agent", teams::automarking_agent()),
        ("selector_3_agents_openai", teams::selector_three_openai()),
        ("round_robin_3_agents_replay", teams::round_robin_three()),
    ];

    let mut group = c.benchmark_group("component");
    group.measurement_time(Duration::from_secs(3));
    for (name, json) in &components {
        let text = serde_json::to_string(json).expect("serializing the component failed");
        let parsed: ComponentModel = serde_json::from_str(&text).expect("the component does not parse");
        if let Err(problems) = registry.build_team(&parsed, &overrides) {
            panic!("the {name} component does not build: {problems:?}");
        }

        group.bench_function(format!("{name}/parse"), |bencher| {
            bencher.iter(|| {
                serde_json::from_str::<ComponentModel>(black_box(&text)).expect("the component does not parse")
            });
        });
        group.bench_function(format!("{name}/build"), |bencher| {
            bencher.iter(|| registry.build_team(black_box(&parsed), &overrides).is_ok());
        });
        group.bench_function(format!("{name}/parse_and_build"), |bencher| {
            bencher.iter(|| {
                let parsed =
                    serde_json::from_str::<ComponentModel>(black_box(&text)).expect("the component does not parse");
                registry.build_team(&parsed, &overrides).is_ok()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, component);
criterion_main!(benches);
