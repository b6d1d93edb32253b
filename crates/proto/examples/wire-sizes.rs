//! Prints the wire-size table of docs/PROTOCOL.md: the bytes of a one-to-one "Hi" and its
//! delivered marker, computed from the real encoder and MQTT framing.
//!
//! `cargo run -p mqchat-proto --example wire-sizes`

fn main() {
    print!("{}", mqchat_proto::wire::size_table());
    for row in mqchat_proto::wire::hi_exchange() {
        let hex: String = row.payload.iter().map(|b| format!("{b:02x}")).collect();
        println!("{}: {hex}", row.step);
    }
}
