//! mqchat-server.
