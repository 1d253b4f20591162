//! Embedded preview assets (written by the web helper).
