//! mqchat-broker.
