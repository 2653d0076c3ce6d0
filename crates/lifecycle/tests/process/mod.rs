//! OS-process manager tests: each injects a fault into a real child process
//! and checks the outcome. Spawn-and-wait helpers are in `support`.

mod bulk;
mod cgroups;
mod readiness;
mod run_as;
mod spawn;
mod status;
mod termination;
