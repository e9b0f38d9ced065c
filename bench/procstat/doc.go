// Package procstat reads what the benchmarks measure of a server from Linux's
// /proc: the process tree under a pid (wsd runs as a master and workers),
// the resident memory and CPU time summed over that tree, and the kernel's
// slab memory. It also raises the open-file limit, which every process that
// holds ten thousand connections needs.
package procstat
