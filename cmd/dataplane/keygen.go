package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dataplane/dataplane/internal/cli"
	"github.com/dataplane/dataplane/sign"
)

func init() {
	commands["keygen"] = command{summary: "generate a publisher signing key pair (ed25519)", run: runKeygen}
}

const keygenSynopsis = `Usage: dataplane keygen [-out PREFIX]

Generates an ed25519 key pair for signing records. The publisher (publish,
publish serve, sync) signs with the private key (-signing-key FILE); every
node (sentinel, cachenode) accepts only records signed by a key listed in its
-trusted-keys. With -out, the private key is written to PREFIX.key (mode 0600)
and the public key to PREFIX.pub; without, the public key and its id are
printed on stdout and the private key on stdout's last line, for a secret
store. The private key is never logged.`

func runKeygen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write PREFIX.key (private, 0600) and PREFIX.pub (public) instead of printing")
	fs.Usage = cli.Usage(fs, stderr, keygenSynopsis, envPrefix)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{errors.New("keygen takes no arguments")}
	}
	pub, priv, err := sign.GenerateKey()
	if err != nil {
		return err
	}
	id := sign.IDOf(pub)
	if *out == "" {
		fmt.Fprintf(stdout, "public key (for -trusted-keys): %s\nkey id: %s\nprivate key (for -signing-key base64:..., keep secret):\n%s\n", sign.EncodePublicKey(pub), id, sign.EncodePrivateKey(priv))
		return nil
	}
	keyFile, pubFile := *out+".key", *out+".pub"
	f, err := os.OpenFile(keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if _, err := fmt.Fprintln(f, sign.EncodePrivateKey(priv)); err != nil {
		f.Close()
		return fmt.Errorf("keygen: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	if err := os.WriteFile(pubFile, []byte(sign.EncodePublicKey(pub)+"\n"), 0o644); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (private) and %s (public key %s, id %s)\n", keyFile, pubFile, sign.EncodePublicKey(pub), id)
	return nil
}

// signingKeyFlag defines -signing-key on fs.
func signingKeyFlag(fs *flag.FlagSet) *string {
	return fs.String("signing-key", "", "sign every record written with this ed25519 private key: a file from dataplane keygen -out,\nor base64:KEY (prefer the file, or $DATAPLANE_SIGNING_KEY). Empty: records are written unsigned")
}

// loadSigner parses a -signing-key value; nil when it is empty.
func loadSigner(spec string) (*sign.Signer, error) {
	if spec == "" {
		return nil, nil
	}
	s, err := sign.LoadSigner(spec)
	if err != nil {
		return nil, usageError{fmt.Errorf("-signing-key: %w", err)}
	}
	return s, nil
}
