//! Integration tests of hostmux-proc against real child processes.
