//! A gRPC-web server stream over HTTP/1.1, as a browser sends it: one POST with the
//! request in a gRPC-web frame, then the response read frame by frame.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

/// An open gRPC-web response stream.
pub struct GrpcWebStream {
    body: Incoming,
    buffer: BytesMut,
}

/// Calls `path` on `addr` with gRPC-web (`application/grpc-web+proto`), `authorization`
/// and the encoded `message`; panics unless the answer is `200` with that content type.
pub async fn grpc_web_stream(addr: SocketAddr, path: &str, authorization: &str, message: &[u8]) -> GrpcWebStream {
    let mut body = vec![0];
    body.extend_from_slice(&u32::try_from(message.len()).expect("a small message").to_be_bytes());
    body.extend_from_slice(message);
    let request = http::Request::post(format!("http://{addr}{path}"))
        .header("host", addr.to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("authorization", authorization)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.expect("handshake");
    tokio::spawn(connection);
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/grpc-web+proto");
    GrpcWebStream { body: response.into_body(), buffer: BytesMut::new() }
}

impl GrpcWebStream {
    /// The next message, decoded as `T`; panics on a trailer frame (the stream's end) or
    /// when the body ends.
    pub async fn next<T: prost::Message + Default>(&mut self) -> T {
        loop {
            // One gRPC-web frame: a flag byte, a big-endian length and the message.
            if self.buffer.len() >= 5 {
                let length = u32::from_be_bytes([self.buffer[1], self.buffer[2], self.buffer[3], self.buffer[4]]);
                let length = usize::try_from(length).expect("a frame length");
                if self.buffer.len() >= 5 + length {
                    let frame = self.buffer.split_to(5 + length);
                    assert_eq!(frame[0], 0, "a trailer frame: the stream ended: {frame:?}");
                    return T::decode(&frame[5..]).expect("a message");
                }
            }
            let frame = self.body.frame().await.expect("the stream ended").expect("a frame");
            self.buffer.extend_from_slice(&frame.into_data().expect("a data frame"));
        }
    }
}
