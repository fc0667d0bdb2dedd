//! The previous release, rebuilt from this source for the upgrade-rollout tests: with
//! `MPC_BUILD_PREVIOUS_RELEASE=1` in the build's environment, the crate compiles the
//! schema the previous release wrote and knows no later step: node store v2 (no
//! request-id index) here, chain store v1 (JSON views) in `mpc-chain`, which uses this
//! same script. Nothing else sets the `previous_release` cfg, so a normal build cannot
//! reach it.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(previous_release)");
    println!("cargo::rerun-if-env-changed=MPC_BUILD_PREVIOUS_RELEASE");
    if std::env::var_os("MPC_BUILD_PREVIOUS_RELEASE").is_some_and(|value| !value.is_empty()) {
        println!("cargo::rustc-cfg=previous_release");
    }
}
