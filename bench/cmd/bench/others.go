package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Versions of the other gateways -others measures, pinned so that runs
// compare like with like.
const (
	litellmVersion = "1.100.0" // the newest whose dependencies the package mirror here serves
	portkeyVersion = "1.15.2"
)

// startOthers installs (once, into bench/.others, which git ignores) and
// starts the other gateways, configured against the fast fake upstream. A
// gateway that cannot be installed or started here is left out with a
// note in the log; the report lists what was measured.
func startOthers(e *env) []*process {
	dir, err := filepath.Abs(filepath.Join("bench", ".others"))
	if err != nil {
		return nil
	}
	os.MkdirAll(dir, 0o755)
	var out []*process
	if p, err := startLiteLLM(e, dir); err != nil {
		log.Printf("LiteLLM left out: %v", err)
	} else {
		out = append(out, p)
	}
	if p, err := startPortkey(e, dir); err != nil {
		log.Printf("Portkey left out: %v", err)
	} else {
		out = append(out, p)
	}
	return out
}

func startLiteLLM(e *env, dir string) (*process, error) {
	venv := filepath.Join(dir, "litellm-"+litellmVersion)
	bin := filepath.Join(venv, "bin", "litellm")
	if _, err := os.Stat(bin); err != nil {
		log.Printf("installing LiteLLM %s from PyPI (once)", litellmVersion)
		if err := runQuiet("python3", "-m", "venv", venv); err != nil {
			return nil, err
		}
		if err := runQuiet(filepath.Join(venv, "bin", "pip"), "install", "-q", "litellm[proxy]=="+litellmVersion); err != nil {
			return nil, err
		}
	}
	cfg := filepath.Join(e.dir, "litellm.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`model_list:
  - model_name: m
    litellm_params:
      model: openai/m
      api_base: http://%s/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
`, e.fast.addr)), 0o600)
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "--config", cfg, "--host", "127.0.0.1", "--port", port, "--num_workers", "1")
	cmd.Env = append(os.Environ(), "LITELLM_LOG=ERROR", "DISABLE_ADMIN_UI=True")
	return startPolling("LiteLLM "+litellmVersion, cmd, addr)
}

func startPortkey(e *env, dir string) (*process, error) {
	prefix := filepath.Join(dir, "portkey-"+portkeyVersion)
	server := filepath.Join(prefix, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
	if _, err := os.Stat(server); err != nil {
		log.Printf("installing Portkey gateway %s from npm (once)", portkeyVersion)
		os.MkdirAll(prefix, 0o755)
		if err := runQuiet("npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", prefix, "@portkey-ai/gateway@"+portkeyVersion); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	return startPolling("Portkey gateway "+portkeyVersion, exec.Command("node", server, "--port="+port), addr)
}

// otherModel is the model id a gateway routes to the fast fake.
func otherModel(name string) string { return "m" }

// otherHeaders are the headers a gateway needs to route to the fast fake.
func otherHeaders(name, fast string) http.Header {
	if len(name) >= 7 && name[:7] == "Portkey" {
		return http.Header{
			"X-Portkey-Provider":    {"openai"},
			"X-Portkey-Custom-Host": {"http://" + fast + "/v1"},
			"Authorization":         {"Bearer sk-bench"},
		}
	}
	return http.Header{"Authorization": {"Bearer sk-bench"}}
}

// startPolling starts a server that prints no address of its own and
// waits until it answers HTTP on addr.
func startPolling(name string, cmd *exec.Cmd, addr string) (*process, error) {
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{name: name, cmd: cmd, addr: addr}
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			return p, nil
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("%s did not answer on %s within 2 minutes", name, addr)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func runQuiet(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", name, err, out)
	}
	return nil
}
