// Command vtmove-vtctldclient is Vitess's vtctldclient command tree, linked with the QueryService
// dialer (grpctabletconn) that the vtctld server links and the vtctldclient binary does not.
//
// With `--server internal`, vtctldclient runs vtctld's workflow code in-process. Before it
// switches writes with reverse replication, that code checks that the target shards have a
// healthy tablet to stream from: it dials each tablet's QueryService and reads StreamHealth.
// The stock vtctldclient has no dialer for that ("No dialer registered for tablet protocol
// grpc"), so a MoveTables SwitchTraffic of writes cannot run in-process; vtctld would run it.
// This binary adds only that dialer, so the commands run as they do inside vtctld.
package main

import (
	"flag"
	"fmt"
	"os"

	"vitess.io/vitess/go/cmd/vtctldclient/command"
	"vitess.io/vitess/go/vt/grpcclient"
	"vitess.io/vitess/go/vt/grpccommon"
	"vitess.io/vitess/go/vt/log"
	"vitess.io/vitess/go/vt/logutil"
	"vitess.io/vitess/go/vt/utils"
	"vitess.io/vitess/go/vt/vtctl/grpcclientcommon"
	"vitess.io/vitess/go/vt/vttablet/grpctmclient"
	"vitess.io/vitess/go/vt/vttablet/tmclient"

	// The transports of the stock vtctldclient...
	_ "vitess.io/vitess/go/vt/vtctl/grpcvtctldclient"
	// ...plus the tablet QueryService dialer vtctld links.
	_ "vitess.io/vitess/go/vt/vttablet/grpctabletconn"
)

func main() {
	flags := command.Root.PersistentFlags()
	flags.AddGoFlagSet(flag.CommandLine)
	log.RegisterFlags(flags)
	logutil.RegisterFlags(flags)
	grpcclient.RegisterFlags(flags)
	grpccommon.RegisterFlags(flags)
	grpcclientcommon.RegisterFlags(flags)
	grpctmclient.RegisterFlags(flags)
	tmclient.RegisterFlags(flags)
	command.Root.SetGlobalNormalizationFunc(utils.NormalizeUnderscoresToDashes)
	if err := command.Root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
