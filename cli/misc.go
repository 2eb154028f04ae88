package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"cell/shared/api"
)

func (a *app) cmdVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version [<remote>:]",
		Short: "Show local and remote versions",
		Args:  checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, err := a.remoteArg(args)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Client version: %s\n", Version)
			server := "unreachable"
			if c, err := a.client(remote); err == nil {
				if srv, _, err := c.GetServer(cmd.Context()); err == nil && srv.Environment.ServerVersion != "" {
					server = srv.Environment.ServerVersion
				}
			}
			fmt.Fprintf(a.stdout, "Server version: %s\n", server)
			return nil
		},
	}
}

func (a *app) cmdOperation() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operation",
		Short: "List, show and delete background operations",
	}
	var format string
	list := &cobra.Command{
		Use:     "list [<remote>:]",
		Aliases: []string{"ls"},
		Short:   "List background operations",
		Args:    checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.remoteClient(args)
			if err != nil {
				return err
			}
			ops, err := c.GetOperations(cmd.Context())
			if err != nil {
				return err
			}
			if ops == nil {
				ops = []api.Operation{}
			}
			sort.Slice(ops, func(i, j int) bool { return ops[i].ID < ops[j].ID })
			var rows [][]string
			for _, op := range ops {
				rows = append(rows, []string{
					op.ID, strings.ToUpper(op.Class), op.Description, strings.ToUpper(op.Status),
					yesNo(op.MayCancel), formatDate(op.CreatedAt),
				})
			}
			sortRows(rows)
			header := []string{"ID", "TYPE", "DESCRIPTION", "STATUS", "CANCELABLE", "CREATED"}
			return renderTable(a.stdout, format, header, rows, ops)
		},
	}
	list.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")

	show := &cobra.Command{
		Use:   "show [<remote>:]<operation>",
		Short: "Show details on a background operation",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			op, err := c.GetOperation(cmd.Context(), id)
			if err != nil {
				return err
			}
			return a.printYAML(op)
		},
	}

	del := &cobra.Command{
		Use:     "delete [<remote>:]<operation>",
		Aliases: []string{"cancel", "rm"},
		Short:   "Delete (cancel) background operations",
		Args:    checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, id, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteOperation(cmd.Context(), id); err != nil {
				return err
			}
			if !a.flagQuiet {
				fmt.Fprintf(a.stdout, "Operation %s deleted\n", id)
			}
			return nil
		},
	}
	cmd.AddCommand(list, show, del)
	return cmd
}

func (a *app) cmdQuery() *cobra.Command {
	var method, data string
	var wait, raw bool
	cmd := &cobra.Command{
		Use:   "query [<remote>:]<API path>",
		Short: "Send a raw query to the server",
		Example: `  c query -X DELETE --wait /1.0/instances/c1
      Delete local instance "c1".`,
		Args: checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			remote, p, err := a.conf.ParseRemote(args[0])
			if err != nil {
				return err
			}
			if !strings.HasPrefix(p, "/") {
				return fmt.Errorf("Query path must start with /")
			}
			c, err := a.client(remote)
			if err != nil {
				return err
			}
			// JSON goes out as JSON; anything else (a file's content) raw.
			var body any
			if data != "" {
				body = strings.NewReader(data)
				if json.Valid([]byte(data)) {
					body = json.RawMessage(data)
				}
			}
			resp, err := c.RawQuery(ctx, strings.ToUpper(method), p, body, "")
			if err != nil {
				return err
			}
			if resp.Envelope == nil {
				// Not JSON: a file or an image, printed as received.
				_, err := a.stdout.Write(resp.Body)
				return err
			}
			env := resp.Envelope
			if wait && env.Type == api.AsyncResponse && env.Operation != "" {
				waited, err := c.RawQuery(ctx, http.MethodGet, env.Operation+"/wait", nil, "")
				if err != nil {
					return err
				}
				env = waited.Envelope
				var op api.Operation
				if json.Unmarshal(env.Metadata, &op) == nil && op.Err != "" {
					return errors.New(op.Err)
				}
			}
			if raw {
				out, err := json.MarshalIndent(env, "", "\t")
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s\n\n", out)
				return nil
			}
			if len(env.Metadata) > 0 && string(env.Metadata) != "{}" && string(env.Metadata) != "null" {
				var buf bytes.Buffer
				if err := json.Indent(&buf, env.Metadata, "", "\t"); err != nil {
					return err
				}
				// lxc leaves a blank line after the document.
				fmt.Fprintf(a.stdout, "%s\n\n", buf.Bytes())
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&method, "request", "X", "GET", "Action (defaults to GET)")
	cmd.Flags().StringVarP(&data, "data", "d", "", "Input data")
	cmd.Flags().BoolVar(&wait, "wait", false, "Wait for the operation to complete")
	cmd.Flags().BoolVar(&raw, "raw", false, "Print the raw response")
	return cmd
}

// logLevels orders logging levels for --loglevel.
var logLevels = map[string]int{"debug": 0, "info": 1, "warn": 2, "warning": 2, "error": 3, "crit": 4}

func (a *app) cmdMonitor() *cobra.Command {
	var types []string
	var format, logLevel string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "monitor [<remote>:]",
		Short: "Monitor a local or remote server",
		Long: `Monitor a local or remote server

By default the monitor listens to all message types. Events print as YAML
(or JSON, or --pretty log lines) until interrupted.`,
		Example: `  c monitor --type=logging
      Only show log messages.

  c monitor --pretty --type=logging --loglevel=info
      Show a pretty log of messages with info level or higher.

  c monitor --type=lifecycle
      Only show lifecycle events.`,
		Args: checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			remote, err := a.remoteArg(args)
			if err != nil {
				return err
			}
			if pretty {
				format = "pretty"
			}
			switch format {
			case "yaml", "json", "pretty":
			default:
				return fmt.Errorf("Invalid format %q: want json, pretty or yaml", format)
			}
			minLevel := -1
			if logLevel != "" {
				l, ok := logLevels[strings.ToLower(logLevel)]
				if !ok {
					return fmt.Errorf("Invalid log level %q", logLevel)
				}
				minLevel = l
			}
			c, err := a.client(remote)
			if err != nil {
				return err
			}
			var printErr error
			err = c.GetEvents(cmd.Context(), types, func(ev api.Event) {
				if printErr == nil {
					printErr = a.printEvent(ev, format, minLevel)
				}
			})
			if printErr != nil {
				return printErr
			}
			return err
		},
	}
	cmd.Flags().StringArrayVar(&types, "type", nil, "Event type to listen for")
	cmd.Flags().StringVarP(&format, "format", "f", "yaml", "Format (json|pretty|yaml)")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "Pretty rendering (short for --format=pretty)")
	cmd.Flags().StringVar(&logLevel, "loglevel", "", "Minimum level for log messages (only available when using pretty format)")
	return cmd
}

// printEvent prints one event. YAML and JSON show it as a generic map,
// keys sorted, the metadata decoded, as lxc does.
func (a *app) printEvent(ev api.Event, format string, minLevel int) error {
	if format == "pretty" {
		if ev.Type != "logging" {
			return a.printEvent(ev, "yaml", minLevel)
		}
		var l api.EventLogging
		if err := json.Unmarshal(ev.Metadata, &l); err != nil {
			return fmt.Errorf("decode logging event: %w", err)
		}
		if lvl, ok := logLevels[strings.ToLower(l.Level)]; ok && lvl < minLevel {
			return nil
		}
		var ctx []string
		for _, k := range sortedKeys(l.Context) {
			ctx = append(ctx, fmt.Sprintf("%s=%q", k, l.Context[k]))
		}
		fmt.Fprintf(a.stdout, "%-5s [%s] %s %s\n", strings.ToUpper(l.Level), ev.Timestamp.Format("2006-01-02T15:04:05Z07:00"), l.Message, strings.Join(ctx, " "))
		return nil
	}

	raw, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	if format == "json" {
		out, err := json.Marshal(generic)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s\n\n", out)
		return nil
	}
	out, err := marshalYAML(generic)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s\n\n", out)
	return nil
}
