//! Source text -> AST ([`parse`]) and AST -> canonical text ([`fmt`]).

pub mod ast;
pub mod comments;
pub mod edit;
pub mod fmt;
pub mod parse;

pub use parse::{SyntaxError, parse};
