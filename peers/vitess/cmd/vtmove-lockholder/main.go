// Command vtmove-lockholder is a third-party lock holder for vtmove's interop tests: it takes a
// keyspace lock or a named lock through Vitess's own topo package (so the lock is exactly what
// vtctld, vtorc or a person at a terminal would hold), keeps it for a while, then releases it.
//
// It prints one line "locked <unix-millis>" on stdout once the lock is held and "released
// <unix-millis>" once it is released, so a test can time the waits on both sides. Killing it
// with SIGKILL leaves the lock to expire with its etcd lease (--topo-etcd-lease-ttl).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"vitess.io/vitess/go/vt/servenv"
	"vitess.io/vitess/go/vt/topo"
	_ "vitess.io/vitess/go/vt/topo/etcd2topo"
)

func main() {
	// The flag set of a Vitess binary that speaks the topology carries the topo flags
	// (--topo-implementation, --topo-global-server-address, --topo-global-root,
	// --topo-etcd-lease-ttl, --lock-timeout).
	fs := servenv.GetFlagSetFor("vtctl")
	keyspace := fs.String("keyspace", "", "lock this keyspace")
	name := fs.String("name", "", "lock this named lock (a workflow lock is <target keyspace>/<workflow>)")
	hold := fs.Duration("hold", 5*time.Second, "how long to hold the lock before releasing it")
	action := fs.String("action", "vtmove-lockholder", "the action recorded in the lock descriptor")
	if err := fs.Parse(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if (*keyspace == "") == (*name == "") {
		fmt.Fprintln(os.Stderr, "exactly one of --keyspace or --name is required")
		os.Exit(2)
	}

	ts, err := topo.OpenServer(
		mustFlag(fs, "topo-implementation"),
		mustFlag(fs, "topo-global-server-address"),
		mustFlag(fs, "topo-global-root"),
	)
	if err != nil {
		fmt.Fprintf(os.Stderr, "open topo: %v\n", err)
		os.Exit(1)
	}
	defer ts.Close()

	ctx := context.Background()
	var unlock func(*error)
	if *keyspace != "" {
		_, unlock, err = ts.LockKeyspace(ctx, *keyspace, *action)
	} else {
		_, unlock, err = ts.LockName(ctx, *name, *action)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "lock: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("locked %d\n", time.Now().UnixMilli())

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-time.After(*hold):
	case <-signals:
	}
	var unlockErr error
	unlock(&unlockErr)
	if unlockErr != nil {
		fmt.Fprintf(os.Stderr, "unlock: %v\n", unlockErr)
		os.Exit(1)
	}
	fmt.Printf("released %d\n", time.Now().UnixMilli())
}

func mustFlag(fs *pflag.FlagSet, name string) string {
	v, err := fs.GetString(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flag %s: %v\n", name, err)
		os.Exit(2)
	}
	return v
}
