//! The mqchat SDK.
