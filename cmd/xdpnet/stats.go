package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/xdpnet/xdpnet/engine/stats"
)

func statsCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("stats", stderr)
	admin := fs.String("admin", "127.0.0.1:9900", "admin address of the running gateway")
	raw := fs.Bool("json", false, "print the /stats document as JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*admin+"/stats", nil)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("admin endpoint %s: %w", *admin, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("admin endpoint %s: %s", *admin, resp.Status)
	}
	if *raw {
		_, err := io.Copy(stdout, resp.Body)
		return err
	}
	var st stats.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return fmt.Errorf("admin endpoint %s: bad /stats document: %w", *admin, err)
	}
	printStats(stdout, st)
	return nil
}

func printStats(w io.Writer, st stats.Stats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "stack\t%s\n", st.Stack)
	fmt.Fprintf(tw, "workers\t%d\n", st.Workers)
	fmt.Fprintf(tw, "uptime\t%v\n", st.Uptime.Round(time.Second))
	fmt.Fprintf(tw, "requests (ok / failed)\t%.0f / %.0f\n", st.RequestsOK, st.RequestsFailed)
	fmt.Fprintf(tw, "tunnels\t%.0f\n", st.Tunnels)
	fmt.Fprintf(tw, "client connections refused / requests cut (slow client)\t%.0f / %.0f\n", st.ConnsRefused, st.ClientTimeouts)
	fmt.Fprintf(tw, "retries / redispatches\t%.0f / %.0f\n", st.Retries, st.Redispatches)
	fmt.Fprintf(tw, "backend requests\t%.0f\n", st.BackendRequests)
	fmt.Fprintf(tw, "backend connections opened / open\t%.0f / %.0f\n", st.BackendConnsOpened, st.BackendConnsOpen)
	fmt.Fprintf(tw, "reuse ratio\t%.4f\n", st.Reuse.ReuseRatio())
	fmt.Fprintf(tw, "servers up\t%d of %d\n", st.ServersUp, st.Servers)
	if st.Net != nil {
		t := st.Net.Totals()
		fmt.Fprintf(tw, "UMEM frames in use / total\t%d / %d\n", t.FramesInUse, t.Frames)
		fmt.Fprintf(tw, "XDP redirected / passed to kernel\t%d / %d\n", t.Redirected, t.Passed)
		fmt.Fprintf(tw, "AF_XDP rx / tx packets\t%d / %d\n", t.RxPackets, t.TxPackets)
		fmt.Fprintf(tw, "drops: AF_XDP kernel / endpoint / netstack\t%d / %d / %d\n", t.KernelDrops, t.EndpointDrops, t.NetstackDrops)
	}
	tw.Flush()
}
