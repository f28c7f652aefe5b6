// An upstream that is down: a port nothing listens on.
//
// 1 (tcpmux): below the range listen(0) hands out (ip_local_port_range, 32768–60999 by default), so no test's server
// can take it, and no service any test machine runs. A port freed by closing a listener was handed to another test
// file's server before the gateway connected to it (a CI run on node 22: the "dead" upstream answered a stream, 200).
export const DEAD_PORT = 1;
