//! `-zg`: guessing a max zoom from feature spacing (placeholder until implemented).
