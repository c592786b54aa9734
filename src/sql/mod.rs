//! The SQL surface: the extension's statements, parsed on top of DataFusion's parser
//! ([`parser`]), run on a session ([`execute`]).

mod ddl;
pub mod execute;
pub mod named_args;
pub mod parser;
