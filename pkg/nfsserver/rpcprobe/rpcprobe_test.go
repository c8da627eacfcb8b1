package rpcprobe

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// record frames words as one or more record-marked fragments of the given sizes
// (in words); no sizes means one fragment.
func record(words []uint32, fragWords ...int) []byte {
	if len(fragWords) == 0 {
		fragWords = []int{len(words)}
	}
	var out []byte
	for i, n := range fragWords {
		mark := uint32(4 * n)
		if i == len(fragWords)-1 {
			mark |= lastFragment
		}
		out = binary.BigEndian.AppendUint32(out, mark)
		for _, w := range words[:n] {
			out = binary.BigEndian.AppendUint32(out, w)
		}
		words = words[n:]
	}
	return out
}

// accepted is a reply with an AUTH_NONE verifier and the given accept status and body.
func accepted(xid, status uint32, body ...uint32) []uint32 {
	return append([]uint32{xid, msgReply, replyAccepted, 0, 0, status}, body...)
}

// serve runs a one-shot RPC server: it reads one call and answers with reply(xid),
// or with nothing when reply returns nil.
func serve(t *testing.T, reply func(call []byte, xid uint32) []byte, hang bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		call, err := readRecord(conn)
		if err != nil {
			t.Errorf("server: read call: %v", err)
			return
		}
		if hang {
			_, _ = io.Copy(io.Discard, conn)
			return
		}
		if out := reply(call, binary.BigEndian.Uint32(call)); out != nil {
			_, _ = conn.Write(out)
		}
	}()
	return ln.Addr().String()
}

func TestNull(t *testing.T) {
	tests := []struct {
		name    string
		reply   func(call []byte, xid uint32) []byte
		hang    bool
		wantErr string // "" means success
		reject  bool   // the error must wrap ErrRejected
	}{
		{name: "success", reply: func(_ []byte, xid uint32) []byte { return record(accepted(xid, acceptSuccess)) }},
		{name: "success in two fragments", reply: func(_ []byte, xid uint32) []byte {
			return record(accepted(xid, acceptSuccess), 2, 4)
		}},
		{name: "success with a verifier body", reply: func(_ []byte, xid uint32) []byte {
			return record([]uint32{xid, msgReply, replyAccepted, 1, 8, 0xaaaa, 0xbbbb, acceptSuccess})
		}},
		{name: "call is a well-formed NULL", reply: func(call []byte, xid uint32) []byte {
			want := Call(xid, ProgramNFS, VersionNFS4)[4:]
			if string(call) != string(want) {
				return record([]uint32{xid, msgReply, replyAccepted, 0, 0, acceptGarbage})
			}
			return record(accepted(xid, acceptSuccess))
		}},
		{name: "version not served", reply: func(_ []byte, xid uint32) []byte {
			return record(accepted(xid, acceptProgMis, 2, 3))
		}, wantErr: "version 4 is not served (versions 2 to 3 are)", reject: true},
		{name: "program not served", reply: func(_ []byte, xid uint32) []byte {
			return record(accepted(xid, acceptProgUnav))
		}, wantErr: "program 100003 is not served", reject: true},
		{name: "denied", reply: func(_ []byte, xid uint32) []byte {
			return record([]uint32{xid, msgReply, replyDenied, 1})
		}, wantErr: "call denied", reject: true},
		{name: "system error", reply: func(_ []byte, xid uint32) []byte {
			return record(accepted(xid, acceptSystemErr))
		}, wantErr: "system error", reject: true},
		{name: "wrong xid", reply: func(_ []byte, xid uint32) []byte {
			return record(accepted(xid+1, acceptSuccess))
		}, wantErr: "expected"},
		{name: "a call instead of a reply", reply: func(_ []byte, xid uint32) []byte {
			return record([]uint32{xid, msgCall, 0})
		}, wantErr: "not a reply"},
		{name: "short reply", reply: func(_ []byte, xid uint32) []byte {
			return record([]uint32{xid, msgReply})
		}, wantErr: "short RPC reply"},
		{name: "oversized reply", reply: func(_ []byte, xid uint32) []byte {
			return record(append(accepted(xid, acceptSuccess), make([]uint32, 300)...))
		}, wantErr: "is not a NULL reply"},
		{name: "connection closed without reply", reply: func([]byte, uint32) []byte { return nil }, wantErr: "read RPC reply"},
		{name: "no reply before the deadline", hang: true, wantErr: "no RPC reply"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, tc.reply, tc.hang)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err := Null(ctx, addr, ProgramNFS, VersionNFS4)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Null() = %v, want success", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Null() = %v, want an error containing %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrRejected) != tc.reject {
				t.Errorf("errors.Is(%v, ErrRejected) = %v, want %v", err, !tc.reject, tc.reject)
			}
		})
	}
}

func TestNullNothingListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := Null(ctx, addr, ProgramNFS, VersionNFS4); err == nil || !strings.Contains(err.Error(), "connect to") {
		t.Fatalf("Null() = %v, want a connect error", err)
	}
}
