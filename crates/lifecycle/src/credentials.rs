//! Running a proc as another user: [`RunAs`], resolved from names or ids
//! the way `runuser`/`initgroups` would, and the check that this process
//! may switch at all.
//!
//! The switch itself happens in the child between clone and exec (in
//! `sys`): supplementary groups, gid, uid, then `PR_SET_NO_NEW_PRIVS`, so
//! neither a set-user-ID binary nor file capabilities can give the proc
//! more than the user has. Everything the host hands a proc (ring memfds,
//! doorbell eventfds, the ready pipe, stdio) is an inherited fd, opened by
//! the host before the switch, so the proc needs no access to any path.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use crate::error::LifecycleError;
use crate::sys::{self, UserKey};

/// The user, primary group and supplementary groups a proc runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    /// The user as given (name or uid), for messages.
    user: String,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    /// Login name and home directory from the passwd entry, if any: the
    /// proc's `USER`, `LOGNAME` and `HOME`.
    login: Option<(String, PathBuf)>,
}

/// Capability numbers (`linux/capability.h`).
const CAP_SETGID: u32 = 6;
const CAP_SETUID: u32 = 7;

impl RunAs {
    /// Resolves `user` (a name, or a decimal uid) and `group` (a name, a
    /// decimal gid, or `None` for the user's primary group) through the
    /// system's user database. Supplementary groups are the user's, as
    /// `initgroups(user, gid)` sets them; a uid without a passwd entry
    /// needs an explicit `group` and gets no supplementary groups.
    pub fn resolve(user: &str, group: Option<&str>) -> Result<Self, LifecycleError> {
        let lookup = |account: &str| {
            let account = account.to_owned();
            move |source| LifecycleError::AccountLookup { account, source }
        };
        let numeric_uid = user.parse::<u32>().ok();
        let key = match numeric_uid {
            Some(uid) => UserKey::Uid(uid),
            None => UserKey::Name(user),
        };
        let entry = sys::passwd_entry(key).map_err(lookup(user))?;
        let gid = match group {
            Some(group) => match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => sys::group_id(group)
                    .map_err(lookup(group))?
                    .ok_or_else(|| LifecycleError::UnknownGroup {
                        group: group.to_owned(),
                    })?,
            },
            None => match &entry {
                Some(entry) => entry.gid,
                None => {
                    return Err(LifecycleError::UnknownUser {
                        user: user.to_owned(),
                        hint: if numeric_uid.is_some() {
                            "; give a group for a uid without a passwd entry"
                        } else {
                            ""
                        },
                    })
                }
            },
        };
        let (uid, groups) = match (&entry, numeric_uid) {
            (Some(entry), _) => (entry.uid, supplementary(&entry.name, gid, user)?),
            (None, Some(uid)) => (uid, vec![gid]),
            (None, None) => {
                return Err(LifecycleError::UnknownUser {
                    user: user.to_owned(),
                    hint: "",
                })
            }
        };
        let login = entry.map(|entry| (entry.name.to_string_lossy().into_owned(), entry.home));
        Ok(Self {
            user: user.to_owned(),
            uid,
            gid,
            groups,
            login,
        })
    }

    /// Resolves `USER` or `USER:GROUP` (as `serve --proc-user` takes it).
    pub fn resolve_spec(spec: &str) -> Result<Self, LifecycleError> {
        match spec.split_once(':') {
            Some((user, group)) => Self::resolve(user, Some(group)),
            None => Self::resolve(spec, None),
        }
    }

    /// Explicit ids, no lookup: `groups` become exactly the supplementary
    /// groups.
    pub fn ids(uid: u32, gid: u32, groups: Vec<u32>) -> Self {
        Self {
            user: uid.to_string(),
            uid,
            gid,
            groups,
            login: None,
        }
    }

    /// The user as given.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The uid.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The primary gid.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// The supplementary groups.
    pub fn groups(&self) -> &[u32] {
        &self.groups
    }

    /// The login name and home directory from the user's passwd entry
    /// (`None` for [`RunAs::ids`] or a uid without an entry). The proc's
    /// `USER`, `LOGNAME` and `HOME` are set from them unless its config
    /// sets those itself.
    pub fn login(&self) -> Option<(&str, &Path)> {
        self.login
            .as_ref()
            .map(|(name, home)| (name.as_str(), home.as_path()))
    }

    /// Whether this process may switch a child to these credentials: it
    /// needs `CAP_SETUID` and `CAP_SETGID` in its effective set (root has
    /// them unless a container or unit took them away).
    pub fn check_permitted(&self) -> Result<(), LifecycleError> {
        let effective = effective_capabilities();
        let needed = (1u64 << CAP_SETUID) | (1u64 << CAP_SETGID);
        if effective.is_some_and(|caps| caps & needed == needed) {
            return Ok(());
        }
        Err(LifecycleError::SwitchUserNotPermitted {
            user: self.user.clone(),
            uid: self.uid,
            host_uid: rustix::process::geteuid().as_raw(),
        })
    }
}

fn supplementary(name: &CStr, gid: u32, user: &str) -> Result<Vec<u32>, LifecycleError> {
    sys::group_list(name, gid).map_err(|source| LifecycleError::AccountLookup {
        account: user.to_owned(),
        source,
    })
}

/// `CapEff` of this process, from `/proc/self/status`.
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_by_name_and_by_uid_with_its_groups() {
        let by_name = RunAs::resolve("root", None).unwrap();
        assert_eq!((by_name.uid(), by_name.gid()), (0, 0));
        assert!(by_name.groups().contains(&0), "{:?}", by_name.groups());
        let by_uid = RunAs::resolve("0", None).unwrap();
        assert_eq!((by_uid.uid(), by_uid.gid()), (0, 0));
        let with_group = RunAs::resolve_spec("root:0").unwrap();
        assert_eq!(with_group.gid(), 0);
        assert_eq!(by_uid.login(), Some(("root", Path::new("/root"))));
    }

    #[test]
    fn unknown_users_and_groups_are_named_in_the_error() {
        let err = RunAs::resolve("no-such-user-hostmux", None).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown user 'no-such-user-hostmux'"),
            "{err}"
        );
        let err = RunAs::resolve("root", Some("no-such-group-hostmux")).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown group 'no-such-group-hostmux'"),
            "{err}"
        );
        // A uid nobody has: usable only with an explicit group.
        let err = RunAs::resolve("4000000000", None).unwrap_err();
        assert!(err.to_string().contains("give a group"), "{err}");
        let bare = RunAs::resolve("4000000000", Some("4000000001")).unwrap();
        assert_eq!(
            (bare.uid(), bare.gid(), bare.groups()),
            (4_000_000_000, 4_000_000_001, &[4_000_000_001][..])
        );
    }
}
