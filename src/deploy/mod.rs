//! Running ember-ci as a vendor deploys it: the container's health check
//! (`ember-ci health`) and the systemd units Podman's quadlet generator
//! turns into a service (`ember-ci quadlet`).

pub mod doctor;
pub mod health;
pub mod quadlet;
