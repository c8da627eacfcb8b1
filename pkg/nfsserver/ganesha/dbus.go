package ganesha

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/pvnfs/pvnfs/pkg/nfsserver/engine"
)

// Ganesha's D-Bus names (ganesha_dbus.h, export_mgr.c, client_mgr.c).
const (
	busName          = "org.ganesha.nfsd"
	exportMgrPath    = "/org/ganesha/nfsd/ExportMgr"
	clientMgrPath    = "/org/ganesha/nfsd/ClientMgr"
	exportMgrIface   = "org.ganesha.nfsd.exportmgr"
	exportStatsIface = "org.ganesha.nfsd.exportstats"
	clientMgrIface   = "org.ganesha.nfsd.clientmgr"
)

// bus is one connection to the private bus, for the calls of one check or scrape.
type bus struct{ conn *dbus.Conn }

func dial(ctx context.Context, address string) (*bus, error) {
	conn, err := dbus.Connect(address, dbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("connect to Ganesha's D-Bus at %s: %w", address, err)
	}
	return &bus{conn: conn}, nil
}

func (b *bus) Close() { b.conn.Close() }

func (b *bus) call(ctx context.Context, path, iface, method string, args ...any) ([]any, error) {
	c := b.conn.Object(busName, dbus.ObjectPath(path)).CallWithContext(ctx, iface+"."+method, 0, args...)
	if c.Err != nil {
		return nil, fmt.Errorf("D-Bus %s.%s: %w", iface, method, c.Err)
	}
	return c.Body, nil
}

// statusCall calls a method whose reply starts with Ganesha's (success, message)
// status and returns the rest of the reply.
func (b *bus) statusCall(ctx context.Context, path, iface, method string, args ...any) ([]any, error) {
	body, err := b.call(ctx, path, iface, method, args...)
	if err != nil {
		return nil, err
	}
	if len(body) < 2 {
		return nil, fmt.Errorf("D-Bus %s: reply has %d values, want a status", method, len(body))
	}
	ok, _ := body[0].(bool)
	msg, _ := body[1].(string)
	if !ok {
		return nil, fmt.Errorf("%w: %s: %s", errStatus, method, msg)
	}
	return body[2:], nil
}

// errStatus marks a call Ganesha answered with a failure status, e.g. "stats
// disabled" or "no activity yet".
var errStatus = errors.New("the Ganesha server reported a failure")

// exportPaths returns the paths of the exports Ganesha serves, by export ID.
func (b *bus) exportPaths(ctx context.Context) (map[uint64]string, error) {
	body, err := b.call(ctx, exportMgrPath, exportMgrIface, "ShowExports")
	if err != nil {
		return nil, err
	}
	if len(body) < 2 {
		return nil, fmt.Errorf("ShowExports: reply has %d values", len(body))
	}
	out := map[uint64]string{}
	for _, e := range items(body[1]) {
		f := items(e)
		if len(f) < 2 {
			continue
		}
		id, ok1 := toUint(f[0])
		path, ok2 := f[1].(string)
		if ok1 && ok2 {
			out[id] = path
		}
	}
	return out, nil
}

// stats reads the counters /metrics reports. Requests and bytes are required;
// per-operation counters and clients are left out when Ganesha does not give them.
func (b *bus) stats(ctx context.Context) (engine.Stats, error) {
	st := engine.Stats{Requests: map[string]uint64{}, Threads: -1, Clients: -1}

	body, err := b.statusCall(ctx, exportMgrPath, exportStatsIface, "GetGlobalOPS")
	if err != nil {
		return engine.Stats{}, err
	}
	for name, n := range pairs(body[len(body)-1]) {
		if v, ok := minorVersion(name); ok {
			st.Requests[v] = n
		}
	}

	if body, err := b.statusCall(ctx, exportMgrPath, exportStatsIface, "GetNFSIO"); err == nil && len(body) >= 2 {
		// a(qs(tttttt)(tttttt)): export, version, read and write counters, each
		// (requested, transferred, operations, errors, latency, queue wait).
		for _, e := range items(body[1]) {
			f := items(e)
			if len(f) < 4 {
				continue
			}
			if r := items(f[2]); len(r) > 1 {
				n, _ := toUint(r[1])
				st.ReadBytes += n
			}
			if w := items(f[3]); len(w) > 1 {
				n, _ := toUint(w[1])
				st.WrittenBytes += n
			}
		}
	} else if err != nil && !errors.Is(err, errStatus) {
		return engine.Stats{}, err
	}

	if body, err := b.statusCall(ctx, exportMgrPath, exportStatsIface, "GetFULLV4Stats"); err == nil && len(body) >= 2 {
		// a(sttddd): operation, count, errors, latencies.
		st.Operations = map[string]uint64{}
		for _, e := range items(body[1]) {
			f := items(e)
			if len(f) < 2 {
				continue
			}
			name, _ := f[0].(string)
			n, _ := toUint(f[1])
			if name != "" {
				st.Operations[engine.NormalizeOperation(name)] = n
			}
		}
	} else if err != nil && !errors.Is(err, errStatus) {
		return engine.Stats{}, err
	}

	if body, err := b.call(ctx, clientMgrPath, clientMgrIface, "ShowClients"); err == nil && len(body) >= 2 {
		st.Clients = len(items(body[1]))
	} else if err != nil {
		return engine.Stats{}, err
	}
	return st, nil
}

// minorVersion maps Ganesha's counter names to the metric's version label.
func minorVersion(name string) (string, bool) {
	v, ok := strings.CutPrefix(name, "NFSv4")
	if !ok || len(v) != 1 {
		return "", false
	}
	return "4." + v, true
}

// items returns the elements of a D-Bus array or struct, which godbus decodes into
// slices of varying element types.
func items(v any) []any {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return nil
	}
	out := make([]any, rv.Len())
	for i := range out {
		out[i] = rv.Index(i).Interface()
	}
	return out
}

// pairs reads name/count pairs, which Ganesha sends either as a struct of
// alternating strings and numbers or as an array of (s, t) structs.
func pairs(v any) map[string]uint64 {
	out := map[string]uint64{}
	list := items(v)
	for i := 0; i+1 < len(list); i++ {
		if name, ok := list[i].(string); ok {
			if n, ok := toUint(list[i+1]); ok {
				out[name] = n
				i++
			}
			continue
		}
		if f := items(list[i]); len(f) == 2 {
			name, ok1 := f[0].(string)
			n, ok2 := toUint(f[1])
			if ok1 && ok2 {
				out[name] = n
			}
		}
	}
	if len(list) > 0 {
		if f := items(list[len(list)-1]); len(f) == 2 {
			name, ok1 := f[0].(string)
			n, ok2 := toUint(f[1])
			if ok1 && ok2 {
				out[name] = n
			}
		}
	}
	return out
}

func toUint(v any) (uint64, bool) {
	switch n := v.(type) {
	case uint64:
		return n, true
	case uint32:
		return uint64(n), true
	case uint16:
		return uint64(n), true
	case int64:
		if n >= 0 {
			return uint64(n), true
		}
	case int32:
		if n >= 0 {
			return uint64(n), true
		}
	}
	return 0, false
}
