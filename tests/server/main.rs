//! The server as its users see it: the real binary, over loopback. What it answers
//! (`answers`), how it is set up and says so (`settings`), and how it is run: stopped, probed,
//! logged, held to its limits (`operations`).

#[path = "../common/mod.rs"]
mod common;

mod answers;
mod operations;
mod settings;

use std::io::{BufReader, Read, Write};
use std::net::TcpListener;

use common::{DEADLINE, Server, hellod, read_response, wait_for};
