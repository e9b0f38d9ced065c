package worker

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/valyala/fasthttp"
)

// wellKnown is the one dot-prefixed folder served (RFC 8615: ACME
// challenges, security.txt, ...).
var wellKnown = []byte(".well-known")

// newStatic returns the handler for --public dir: fasthttp's file server on
// an os.Root of dir, so that no request reaches outside dir, not even through
// a symbolic link (fasthttp has already cleaned "..", decoded or not, out of
// the path). It serves a folder's index.html, answers conditional requests
// (ETag, Last-Modified) and byte ranges, and compresses with brotli, zstd or
// gzip as the client accepts. The compressed copies are kept in memory by
// fasthttp's file cache (fs.FS mode), not written next to the files, so dir
// may be read-only. Directory listings are generated only with listing.
func newStatic(dir string, listing bool) (fasthttp.RequestHandler, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("worker: public: %w", err)
	}
	files := &fasthttp.FS{
		FS:                 publicFS{root.FS()},
		IndexNames:         []string{"index.html"},
		GenerateIndexPages: listing,
		AcceptByteRange:    true,
		GenerateETag:       true,
		Compress:           true,
		CompressBrotli:     true,
		CompressZstd:       true,
		PathNotFound:       notFound,
	}
	serve := files.NewRequestHandler()
	return func(ctx *fasthttp.RequestCtx) {
		if !ctx.IsGet() && !ctx.IsHead() {
			ctx.Response.Header.Set("Allow", "GET, HEAD")
			plainError(ctx, fasthttp.StatusMethodNotAllowed)
			return
		}
		if hidden(ctx.Path()) {
			notFound(ctx)
			return
		}
		// Revalidate every time: an unchanged file costs a 304, a changed
		// one is served once fasthttp's file cache (10 s) lets it go.
		ctx.Response.Header.Set("Cache-Control", "no-cache")
		ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
		serve(ctx)
		relativeLocation(ctx)
	}, nil
}

// relativeLocation makes the Location of fasthttp's folder redirect
// ("/docs" to "/docs/") a path: fasthttp writes it absolute, with the
// scheme and the Host header of the request, so a client that sends a
// forged Host (or a proxy that passes one on) would get, and maybe cache, a
// redirect to another site.
func relativeLocation(ctx *fasthttp.RequestCtx) {
	loc := ctx.Response.Header.Peek("Location")
	if len(loc) == 0 {
		return
	}
	u := fasthttp.AcquireURI()
	defer fasthttp.ReleaseURI(u)
	if err := u.Parse(nil, loc); err != nil {
		ctx.Response.Header.Set("Location", "/")
		return
	}
	// RequestURI is the path, escaped, and the query. A path that starts
	// with two slashes (or a slash and a backslash, to a browser) would be
	// read as a host: it keeps one.
	rel := u.RequestURI()
	for len(rel) > 1 && (rel[1] == '/' || rel[1] == '\\') {
		rel = rel[1:]
	}
	ctx.Response.Header.SetBytesV("Location", rel)
}

// serveStatic serves --public.
func (w *Worker) serveStatic(ctx *fasthttp.RequestCtx) { w.public(ctx) }

// hidden reports whether a cleaned path has a segment starting with a dot
// (.git, .env, editor backups), other than .well-known: those are kept out
// of reach, as most static servers do by default.
func hidden(path []byte) bool {
	for len(path) > 0 {
		var seg []byte
		seg, path, _ = bytes.Cut(path, []byte("/"))
		if len(seg) > 0 && seg[0] == '.' && !bytes.Equal(seg, wellKnown) {
			return true
		}
	}
	return false
}

// publicFS is the --public folder as fasthttp reads it. It cleans the
// names asked for: fasthttp opens "" for the root folder and "./index.html"
// for the root's index, which io/fs does not accept (cleaning keeps a ".."
// that leaves the root, which os.Root refuses). Its listings leave out the
// hidden entries, which are not served.
type publicFS struct{ fsys fs.FS }

func (p publicFS) Open(name string) (fs.File, error) { return p.fsys.Open(path.Clean(name)) }

// ReadDir implements fs.ReadDirFS.
func (p publicFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(p.fsys, path.Clean(name))
	return slices.DeleteFunc(entries, func(e fs.DirEntry) bool {
		return strings.HasPrefix(e.Name(), ".") && e.Name() != string(wellKnown)
	}), err
}

func notFound(ctx *fasthttp.RequestCtx) { plainError(ctx, fasthttp.StatusNotFound) }

// plainError answers with status and its text, keeping the headers already
// set (ctx.Error would drop them).
func plainError(ctx *fasthttp.RequestCtx, status int) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(fmt.Sprintf("%d %s\n", status, fasthttp.StatusMessage(status)))
}
