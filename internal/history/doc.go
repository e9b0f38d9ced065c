// Package history keeps the recent messages of pub/sub channels so that a
// subscriber that reconnects can be given exactly what it missed.
//
// Every message of a channel gets an offset, one more than the previous;
// each channel's stream has an epoch, a random name that changes whenever
// its history is lost (evicted for memory, expired, or held by a process
// that restarted). A subscriber that comes back with the offset and epoch
// it last saw gets the messages after it, or learns that they cannot be
// had (another epoch, or messages no longer kept) and must reload its
// state some other way: never a silent gap.
//
// Memory is bounded three ways: messages per channel, their age, and bytes
// in all. Over the total, the least recently published channels are
// forgotten whole (their next message starts a new epoch), so the bound
// holds against a client that publishes to many channels.
package history
