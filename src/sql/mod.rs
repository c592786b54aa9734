//! The SQL surface: the extension's statements, parsed on top of DataFusion's parser.

pub mod parser;
