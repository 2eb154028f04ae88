package cli

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"cell/shared/tlsutil"
)

// certDateLayout is how lxc prints certificate dates.
const certDateLayout = "Jan 2, 2006 at 3:04pm (MST)"

func (a *app) cmdConfigTrust() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "Manage trusted clients",
	}
	cmd.AddCommand(a.cmdTrustList(), a.cmdTrustAdd(), a.cmdTrustRemove(), a.cmdTrustListTokens(), a.cmdTrustRevokeToken())
	return cmd
}

func (a *app) cmdTrustList() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list [<remote>:]",
		Aliases: []string{"ls"},
		Short:   "List trusted clients",
		Args:    checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.remoteClient(args)
			if err != nil {
				return err
			}
			certs, err := c.Certificates(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, ct := range certs {
				cn, issued, expires := "", "", ""
				if x, err := tlsutil.ParseCertPEM([]byte(ct.Certificate)); err == nil {
					cn = x.Subject.CommonName
					issued = x.NotBefore.Local().Format(certDateLayout)
					expires = x.NotAfter.Local().Format(certDateLayout)
				}
				rows = append(rows, []string{ct.Type, ct.Name, cn, ct.Fingerprint[:min(12, len(ct.Fingerprint))], issued, expires})
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i][1] < rows[j][1] })
			header := []string{"TYPE", "NAME", "COMMON NAME", "FINGERPRINT", "ISSUE DATE", "EXPIRY DATE"}
			return renderTable(a.stdout, format, header, rows, certs)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}

func (a *app) cmdTrustAdd() *cobra.Command {
	var name string
	var restricted bool
	cmd := &cobra.Command{
		Use:   "add [<remote>:] [<cert>]",
		Short: "Add new trusted client",
		Long: `Add new trusted client

Without a certificate file, this makes a one-time join token for the client
called --name: "c remote add NAME TOKEN" on the client uses it.`,
		Args: checkArgs(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var remoteArgs []string
			certFile := ""
			switch {
			case len(args) == 2:
				remoteArgs, certFile = args[:1], args[1]
			case len(args) == 1 && strings.HasSuffix(args[0], ":"):
				remoteArgs = args
			case len(args) == 1:
				certFile = args[0]
			}
			c, err := a.remoteClient(remoteArgs)
			if err != nil {
				return err
			}
			if certFile != "" {
				data, err := os.ReadFile(certFile)
				if err != nil {
					return fmt.Errorf("read certificate: %w", err)
				}
				if name == "" {
					if x, err := tlsutil.ParseCertPEM(data); err == nil {
						name = x.Subject.CommonName
					}
				}
				return c.AddCertificate(cmd.Context(), name, string(data), restricted)
			}
			if name == "" {
				fmt.Fprint(a.stdout, "Please provide client name: ")
				if name, err = readLine(a.stdin); err != nil {
					return err
				}
			}
			tok, err := c.CreateCertificateToken(cmd.Context(), name, restricted)
			if err != nil {
				return err
			}
			if a.flagQuiet {
				fmt.Fprintln(a.stdout, tok.String())
				return nil
			}
			fmt.Fprintf(a.stdout, "Client %s certificate add token:\n%s\n", name, tok.String())
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "Alternative certificate name")
	cmd.Flags().BoolVar(&restricted, "restricted", false, "Restrict the certificate to one or more projects")
	return cmd
}

func (a *app) cmdTrustRemove() *cobra.Command {
	return &cobra.Command{
		Use:     "remove [<remote>:]<fingerprint>",
		Aliases: []string{"rm"},
		Short:   "Remove trusted client",
		Args:    checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, fp, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			return c.DeleteCertificate(cmd.Context(), fp)
		},
	}
}

func (a *app) cmdTrustListTokens() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "list-tokens [<remote>:]",
		Short: "List all active certificate add tokens",
		Args:  checkArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.remoteClient(args)
			if err != nil {
				return err
			}
			tokens, err := c.CertificateTokens(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, t := range tokens {
				shown := t.Token.String()
				if t.Token.Secret == "" {
					// Only a hash of the secret is kept: a token made
					// before the server restarted cannot be shown again.
					shown = "(issued before the server restarted: not shown)"
				}
				expires := ""
				if !t.Token.ExpiresAt.IsZero() {
					expires = t.Token.ExpiresAt.Local().Format("2006/01/02 15:04 MST")
				}
				rows = append(rows, []string{t.Token.ClientName, shown, expires})
			}
			sort.Slice(rows, func(i, j int) bool { return rows[i][0] < rows[j][0] })
			return renderTable(a.stdout, format, []string{"NAME", "TOKEN", "EXPIRES AT"}, rows, tokens)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "Format (csv|json|table|yaml|compact)")
	return cmd
}

func (a *app) cmdTrustRevokeToken() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke-token [<remote>:]<name>",
		Short: "Revoke certificate add token",
		Args:  checkArgs(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, name, err := a.parseOne(args[0])
			if err != nil {
				return err
			}
			return c.RevokeCertificateToken(cmd.Context(), name)
		},
	}
}
