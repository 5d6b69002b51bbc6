//! Every integration test of ember-ci in one binary (one link, one run),
//! a module per area. Test support is the `ember_ci_test_kit` crate
//! (crates/test-kit). Tests that run real jobs on Podman take
//! `ember_ci_test_kit::podman_lock`.

mod browser;
mod commands;
mod config;
mod config_template;
mod crash;
mod deploy;
mod deploy_e2e;
mod deploy_systemd;
mod doctor;
mod e2e;
mod executor;
mod github;
mod history;
mod hosts;
mod job_soak;
mod logs_place;
mod logs_publish;
mod plugin_host;
mod relay;
mod run_command;
mod sandbox;
mod sanity;
mod scheduler;
mod soak;
mod vendor_flows;
mod web;
mod webhook;
