//! Preview pages (written by the web helper).
