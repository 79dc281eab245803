//! Discovery: the `gctr discovery` server and the node's client for it.
