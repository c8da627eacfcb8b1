package rpcprobe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// Program numbers and versions pvnfs probes.
const (
	// ProgramNFS is the NFS program number (RFC 7530).
	ProgramNFS uint32 = 100003
	// VersionNFS4 is NFS version 4; minor versions share it.
	VersionNFS4 uint32 = 4
)

// Message constants of RFC 5531.
const (
	msgCall         = 0
	msgReply        = 1
	rpcVersion      = 2
	replyAccepted   = 0
	replyDenied     = 1
	acceptSuccess   = 0
	acceptProgUnav  = 1
	acceptProgMis   = 2
	acceptProcUnav  = 3
	acceptGarbage   = 4
	acceptSystemErr = 5
	lastFragment    = 1 << 31
	// maxReply bounds what a NULL reply may take: a verifier is at most 400 bytes.
	maxReply = 1024
)

// ErrRejected is wrapped by every error that comes from a reply the server sent,
// as opposed to a network failure: the server is up but does not serve the program.
var ErrRejected = errors.New("NFS server rejected the RPC NULL call")

// Null sends an RPC NULL call for prog/vers to addr ("host:port") over TCP and
// waits for a successful reply. ctx must carry the deadline: it bounds the dial, the
// write and the read.
func Null(ctx context.Context, addr string, prog, vers uint32) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(deadline); err != nil {
			return err
		}
	}
	// Closing the connection when ctx is cancelled unblocks the read below even
	// without a deadline.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	xid, err := newXID()
	if err != nil {
		return err
	}
	if _, err := conn.Write(Call(xid, prog, vers)); err != nil {
		return fmt.Errorf("send RPC NULL to %s: %w", addr, err)
	}
	reply, err := readRecord(conn)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no RPC reply from %s before the deadline: %w", addr, err)
		}
		return fmt.Errorf("read RPC reply from %s: %w", addr, err)
	}
	return CheckReply(reply, xid, prog, vers)
}

// Call encodes an RPC NULL call with AUTH_NONE credentials as one TCP record.
func Call(xid, prog, vers uint32) []byte {
	words := []uint32{
		xid, msgCall, rpcVersion, prog, vers, 0, // procedure 0 is NULL
		0, 0, // credential: AUTH_NONE, no body
		0, 0, // verifier: AUTH_NONE, no body
	}
	b := make([]byte, 4+4*len(words))
	binary.BigEndian.PutUint32(b, lastFragment|uint32(4*len(words)))
	for i, w := range words {
		binary.BigEndian.PutUint32(b[4+4*i:], w)
	}
	return b
}

// readRecord reads one record-marked RPC message, joining its fragments.
func readRecord(r io.Reader) ([]byte, error) {
	var msg []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return nil, err
		}
		mark := binary.BigEndian.Uint32(hdr[:])
		n := mark &^ lastFragment
		if len(msg)+int(n) > maxReply {
			return nil, fmt.Errorf("reply of more than %d bytes is not a NULL reply", maxReply)
		}
		frag := make([]byte, n)
		if _, err := io.ReadFull(r, frag); err != nil {
			return nil, err
		}
		msg = append(msg, frag...)
		if mark&lastFragment != 0 {
			return msg, nil
		}
	}
}

// CheckReply decodes a reply to the NULL call xid and reports whether it succeeded.
func CheckReply(msg []byte, xid, prog, vers uint32) error {
	d := decoder{b: msg}
	gotXID, mtype, stat := d.uint32(), d.uint32(), d.uint32()
	if d.err != nil {
		return fmt.Errorf("short RPC reply (%d bytes)", len(msg))
	}
	if gotXID != xid {
		return fmt.Errorf("RPC reply for xid %#x, expected %#x", gotXID, xid)
	}
	if mtype != msgReply {
		return fmt.Errorf("RPC message type %d is not a reply", mtype)
	}
	switch stat {
	case replyAccepted:
	case replyDenied:
		return fmt.Errorf("%w: call denied (reject status %d)", ErrRejected, d.uint32())
	default:
		return fmt.Errorf("unknown RPC reply status %d", stat)
	}
	d.uint32()           // verifier flavor
	d.opaque()           // verifier body
	accept := d.uint32() // accept status
	if d.err != nil {
		return fmt.Errorf("short RPC reply (%d bytes)", len(msg))
	}
	switch accept {
	case acceptSuccess:
		return nil
	case acceptProgUnav:
		return fmt.Errorf("%w: program %d is not served", ErrRejected, prog)
	case acceptProgMis:
		low, high := d.uint32(), d.uint32()
		return fmt.Errorf("%w: program %d version %d is not served (versions %d to %d are)", ErrRejected, prog, vers, low, high)
	case acceptProcUnav:
		return fmt.Errorf("%w: NULL procedure unavailable", ErrRejected)
	case acceptGarbage:
		return fmt.Errorf("%w: server could not decode the call", ErrRejected)
	case acceptSystemErr:
		return fmt.Errorf("%w: server system error", ErrRejected)
	}
	return fmt.Errorf("%w: accept status %d", ErrRejected, accept)
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uint32() uint32 {
	if d.err != nil || len(d.b) < 4 {
		d.err = io.ErrUnexpectedEOF
		return 0
	}
	v := binary.BigEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) opaque() {
	n := d.uint32()
	padded := (int(n) + 3) &^ 3
	if d.err != nil || n > 400 || len(d.b) < padded {
		d.err = io.ErrUnexpectedEOF
		return
	}
	d.b = d.b[padded:]
}

func newXID() (uint32, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b[:]), nil
}
