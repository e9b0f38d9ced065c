package conformance

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

const catUTF8 = "6 UTF-8 Handling"

// kosme is "κόσμε", the Greek word of Markus Kuhn's UTF-8 stress test.
const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

// utf8Groups are Autobahn 6.5-6.23: Markus Kuhn's UTF-8 decoder stress test
// sequences, each sent as one text message. Valid ones must be echoed,
// invalid ones must fail the connection with 1007.
var utf8Groups = []struct {
	title string
	seqs  []string
}{
	{"Some valid UTF-8 sequences", []string{kosme, "\xf0\x90\x80\x80", "\xf0\x9f\x98\x80", "\xe2\x82\xac", "\xc2\xb5"}},
	{"All prefixes of a valid UTF-8 string with multi-byte code points", prefixes(kosme)},
	{"First possible sequence of a certain length", []string{"\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80"}},
	{"First possible sequence length 5/6 (invalid code points)", []string{"\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80"}},
	{"Last possible sequence of a certain length", []string{"\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf"}},
	{"Last possible sequence length 4/5/6 (invalid code points)", []string{"\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf"}},
	{"Other boundary conditions", []string{"\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf", "\xf4\x90\x80\x80"}},
	{"Unexpected continuation bytes", []string{"\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf", "\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", byteRange(0x80, 0xbf, "")}},
	{"Lonely start characters", []string{byteRange(0xc0, 0xdf, " "), byteRange(0xe0, 0xef, " "), byteRange(0xf0, 0xf7, " "), byteRange(0xf8, 0xfb, " "), byteRange(0xfc, 0xfd, " ")}},
	{"Sequences with last continuation byte missing", lastByteMissing},
	{"Concatenation of incomplete sequences", []string{concat(lastByteMissing)}},
	{"Impossible bytes", []string{"\xfe", "\xff", "\xfe\xfe\xff\xff"}},
	{"Examples of an overlong ASCII character", []string{"\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf"}},
	{"Maximum overlong sequences", []string{"\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf"}},
	{"Overlong representation of the NUL character", []string{"\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80"}},
	{"Single UTF-16 surrogates", []string{"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf", "\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"}},
	{"Paired UTF-16 surrogates", []string{"\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf", "\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf", "\xed\xae\x80\xed\xb0\x80", "\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf"}},
	{"Non-character code points (valid UTF-8)", nonCharacters()},
	{"Unicode specials", []string{"\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb", "\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf"}},
}

var lastByteMissing = []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80", "\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}

func prefixes(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[:i+1]
	}
	return out
}

// byteRange returns the bytes lo..hi, each followed by sep.
func byteRange(lo, hi byte, sep string) string {
	var b []byte
	for c := int(lo); c <= int(hi); c++ {
		b = append(b, byte(c))
		b = append(b, sep...)
	}
	return string(b)
}

func concat(ss []string) string {
	var b []byte
	for _, s := range ss {
		b = append(b, s...)
	}
	return string(b)
}

// nonCharacters returns U+FFFE, U+FFFF and U+nFFFE, U+nFFFF for every
// supplementary plane: valid UTF-8 that is not meant for interchange.
func nonCharacters() []string {
	var out []string
	for plane := rune(0); plane <= 0x10; plane++ {
		for _, low := range []rune{0xFFFE, 0xFFFF} {
			out = append(out, string(plane<<16|low))
		}
	}
	return out
}

// utf8Splits are strings sent as two fragments split at every byte
// boundary, many of them inside a code point.
var utf8Splits = []struct {
	title string
	s     string
}{
	{"1-, 2-, 3- and 4-byte code points", "a\xc2\xb5\xe2\x82\xac\xf0\x90\x8d\x88z"},
	{"Autobahn's mixed Latin string", "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"},
	{"κόσμε followed by a surrogate (invalid)", kosme + "\xed\xa0\x80edited"},
	{"a message ending inside a 4-byte code point (invalid)", "a\xc2\xb5\xe2\x82\xac\xf0\x90\x8d"},
	{"an overlong encoding in the middle (invalid)", "ab\xc0\xafcd"},
}

func utf8Cases() []Case {
	var cs []Case
	add := func(id, desc string, run caseFunc) {
		cs = append(cs, Case{ID: id, Category: catUTF8, Description: desc, Run: run})
	}
	// 6.1: empty fragments.
	add("6.1.1", "Send text message of length 0; expect its echo.",
		script(closes(), send(oneChop, textFrame("")), expectText("")))
	add("6.1.2", "Send fragmented text message, 3 fragments each of length 0; expect an empty echo.",
		script(closes(), send(oneChop, fragment(opText, false, nil), fragment(opContinuation, false, nil), fragment(opContinuation, true, nil)), expectText("")))
	add("6.1.3", "Send fragmented text message, 3 fragments, first and last of length 0, middle non-empty; expect its echo.",
		script(closes(), send(oneChop, fragment(opText, false, nil), fragment(opContinuation, false, []byte("middle frame payload")), fragment(opContinuation, true, nil)), expectText("middle frame payload")))

	// 6.2: valid UTF-8, fragmented on and inside code points.
	hello := "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"
	add("6.2.1", "Send valid UTF-8 text message in one fragment; expect its echo.",
		script(closes(), send(oneChop, textFrame(hello)), expectText(hello)))
	add("6.2.2", "Send valid UTF-8 text message in 2 fragments split on a code point boundary; expect its echo.",
		script(closes(), send(oneChop, fragment(opText, false, []byte(hello[:7])), fragment(opContinuation, true, []byte(hello[7:]))), expectText(hello)))
	add("6.2.3", "Send valid UTF-8 text message in fragments of 1 octet; expect its echo.",
		script(closes(), send(oneChop, octetFragments(hello)...), expectText(hello)))
	add("6.2.4", "Send valid UTF-8 text message (κόσμε) in fragments of 1 octet; expect its echo.",
		script(closes(), send(oneChop, octetFragments(kosme)...), expectText(kosme)))

	// 6.3: invalid UTF-8, whole and in 1-octet fragments.
	bad := kosme + "\xed\xa0\x80edited"
	add("6.3.1", "Send invalid UTF-8 text message (a surrogate) unfragmented; expect 1007.",
		script(fails(invalidPayload, closeProtocolError), send(oneChop, textFrame(bad))))
	add("6.3.2", "Send invalid UTF-8 text message (a surrogate) in fragments of 1 octet; expect 1007.",
		script(fails(invalidPayload, closeProtocolError), send(oneChop, octetFragments(bad)...)))

	// 6.4: fail fast.
	add("6.4.1", "Send 3 fragments: valid, then one holding an out-of-range code point, then valid, with pauses; expect 1007 right after the 2nd (at message end is NON-STRICT).",
		failFast(kosme, "\xf4\x90\x80\x80", "edited", true))
	add("6.4.2", "As 6.4.1 but the invalid sequence starts at the end of the 1st fragment and the 2nd fragment is the single byte that makes it invalid.",
		failFast(kosme+"\xf4", "\x90", "\x80\x80edited", true))
	add("6.4.3", "Send one text frame whose payload arrives in 3 parts with pauses, the 2nd holding an out-of-range code point; expect 1007 right after the 2nd part (at frame end is NON-STRICT).",
		failFast(kosme, "\xf4\x90\x80\x80", "edited", false))
	add("6.4.4", "As 6.4.3 but the 2nd part is only the 2 bytes \\xf4\\x90, which already make the sequence invalid.",
		failFast(kosme, "\xf4\x90", "\x80\x80edited", false))

	// 6.5-6.23: the stress test sequences.
	for g, group := range utf8Groups {
		for i, s := range group.seqs {
			id := fmt.Sprintf("6.%d.%d", g+5, i+1)
			if utf8.ValidString(s) {
				add(id, fmt.Sprintf("%s: send valid UTF-8 text message %s; expect its echo.", group.title, preview([]byte(s))),
					script(closes(), send(oneChop, textFrame(s)), expectText(s)))
			} else {
				add(id, fmt.Sprintf("%s: send invalid UTF-8 text message %s; expect 1007.", group.title, preview([]byte(s))),
					script(fails(invalidPayload, closeProtocolError), send(oneChop, textFrame(s))))
			}
		}
	}

	// 6.24-6.28: two fragments split at every byte boundary.
	for g, split := range utf8Splits {
		for k := 1; k < len(split.s); k++ {
			id := fmt.Sprintf("6.%d.%d", g+24, k)
			frames := []frame{fragment(opText, false, []byte(split.s[:k])), fragment(opContinuation, true, []byte(split.s[k:]))}
			where := fmt.Sprintf("split after byte %d of %d", k, len(split.s))
			if !utf8.ValidString(split.s[:k]) {
				where += ", inside a code point"
			}
			if utf8.ValidString(split.s) {
				add(id, fmt.Sprintf("Send %s as 2 text fragments %s; expect its echo.", split.title, where),
					script(closes(), send(oneChop, frames...), expectText(split.s)))
			} else {
				add(id, fmt.Sprintf("Send %s as 2 text fragments %s; expect 1007.", split.title, where),
					script(fails(invalidPayload, closeProtocolError), send(oneChop, frames...)))
			}
		}
	}
	return cs
}

// octetFragments splits s into a text message of 1-byte fragments.
func octetFragments(s string) []frame {
	frames := make([]frame, len(s))
	for i := range len(s) {
		op := byte(opContinuation)
		if i == 0 {
			op = opText
		}
		frames[i] = fragment(op, i == len(s)-1, []byte(s[i:i+1]))
	}
	return frames
}

// failFastWait is how long a fail-fast case waits for the server to react
// to the invalid part before sending the rest; Autobahn waits 1 s.
const failFastWait = time.Second

// failFast is Autobahn 6.4.x: parts p1, p2, p3 form an invalid text
// message; p2 makes it invalid. With fragments, each part is a frame;
// without, they are the payload of one frame written in three goes. A
// server that fails before p3 is OK; one that fails only at the end of
// the message (or frame) is NON-STRICT.
func failFast(p1, p2, p3 string, fragments bool) caseFunc {
	return func(ctx context.Context, t *Target) Result {
		c, err := open(ctx, t, "")
		if err != nil {
			return failedErr(err)
		}
		defer c.close()
		var parts [3][]byte
		if fragments {
			parts[0] = encode(fragment(opText, false, []byte(p1)))
			parts[1] = encode(fragment(opContinuation, false, []byte(p2)))
			parts[2] = encode(fragment(opContinuation, true, []byte(p3)))
		} else {
			whole := encode(textFrame(p1 + p2 + p3))
			cut1 := len(whole) - len(p2) - len(p3)
			cut2 := len(whole) - len(p3)
			parts = [3][]byte{whole[:cut1], whole[cut1:cut2], whole[cut2:]}
		}
		c.write(parts[0])
		if c.waitReadable(failFastWait / 4) {
			e, err := c.nextUseful()
			return failed("server reacted to the valid first part: %v%v", e, errSuffix(err))
		}
		c.write(parts[1])
		if c.waitReadable(failFastWait) {
			res := c.play(fails(invalidPayload, closeProtocolError))
			if res.Verdict != Failed {
				res.Reason = "failed fast: " + res.Reason
			}
			return res
		}
		c.write(parts[2])
		res := c.play(fails(invalidPayload, closeProtocolError))
		if res.Verdict == OK {
			res = nonStrict("did not fail fast, only at the end of the %s: %s", map[bool]string{true: "message", false: "frame"}[fragments], res.Reason)
		}
		return res
	}
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}
