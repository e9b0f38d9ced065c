// Package conformance is an RFC 6455 (WebSocket) and RFC 7692
// (permessage-deflate) conformance suite for servers, modelled on
// Autobahn|Testsuite's fuzzing client.
//
// It talks raw TCP to an echo endpoint (one that sends every message back
// with its type, as wsd's worker does at "/") using its own frame encoder
// and decoder, so it can send what no WebSocket library would: unmasked or
// oversized frames, reserved bits and opcodes, broken fragment sequences,
// invalid UTF-8 split at every byte, bad close codes, malformed handshakes
// and extension offers. Each Case judges what the server does with a
// Verdict, as Autobahn does:
//
//   - OK: the behaviour RFC 6455 asks for.
//   - NON-STRICT: a behaviour the RFC allows but does not prefer, such as
//     failing on invalid UTF-8 at the end of a message instead of as soon as
//     it is detectable, or dropping TCP where a close frame was optional.
//   - FAILED: a protocol violation, a wrong echo, a wrong close code, a
//     missing close handshake or a timeout.
//
// Case numbers follow Autobahn where a case exists there (1.1.1 to 13.x);
// 0.x are opening handshake cases, and a few numbers past Autobahn's own
// (1.3.x, 5.21+, 6.24+, 7.11.x, 9.9.x, 13.10+) cover what Autobahn leaves
// out: message size limits, every-byte UTF-8 splits, extension offers a
// server must decline. Category 9 is scaled down to stay within a few
// seconds and within the server's message size limit (Target.MaxMessageSize).
//
// Run runs a list of cases against a Target and returns a Report whose
// Summary line reads "N passed, M failed", passed counting OK and
// NON-STRICT. The cmd/wsd-conformance command runs the suite against any
// ws:// URL.
package conformance
