//! A loopback HTTP/1.1 server for tests: answers from a fixed table, records the paths asked.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// One route: path, status, headers, body.
pub type Route = (&'static str, u16, Vec<(&'static str, String)>, Vec<u8>);

/// A loopback HTTP/1.1 server answering from a fixed table; records the paths asked for.
pub fn serve(routes: Vec<Route>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
            }
            log.lock().unwrap().push(path.clone());
            let (status, headers, body) = routes
                .iter()
                .find(|(p, ..)| *p == path)
                .map(|(_, s, h, b)| (*s, h.clone(), b.clone()))
                .unwrap_or((404, vec![], b"not here".to_vec()));
            let mut head = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            // A client that hung up early is the client's business: the test asserts on
            // what it got.
            if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
                continue;
            }
            let mut rest = Vec::new();
            if let Err(e) = stream.read_to_end(&mut rest) {
                eprintln!("test server: {e}");
            }
        }
    });
    (format!("http://127.0.0.1:{}", addr.port()), asked)
}
