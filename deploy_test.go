package consortium_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/consortium-dev/consortium/internal/config"
)

// readDocs decodes every YAML document of a file.
func readDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, doc)
	}
}

// dig follows keys (strings for maps, ints for lists) into a document.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestDeployFiles checks that deploy/ parses, that the compose file and
// the Kubernetes manifests hold what docs/deploy.md says, and that the
// proxy's configuration in both is valid.
func TestDeployFiles(t *testing.T) {
	compose := readDocs(t, "deploy/compose.yaml")[0]
	if n := dig(compose, "services", "consortium", "deploy", "replicas"); n != 2 {
		t.Errorf("compose: %v consortium replicas, want 2", n)
	}
	for _, svc := range []string{"redis", "lb"} {
		if dig(compose, "services", svc, "image") == nil {
			t.Errorf("compose: no %s service from an image", svc)
		}
	}

	kinds := map[string]map[string]any{}
	files, _ := filepath.Glob("deploy/k8s/*.yaml")
	for _, f := range files {
		for _, doc := range readDocs(t, f) {
			kind, _ := doc["kind"].(string)
			if kind == "" {
				t.Errorf("%s: a document without kind", f)
			}
			kinds[kind] = doc
		}
	}
	for _, kind := range []string{"Deployment", "Service", "HorizontalPodAutoscaler", "StatefulSet", "ConfigMap", "Kustomization", "PodDisruptionBudget"} {
		if kinds[kind] == nil {
			t.Errorf("deploy/k8s: no %s", kind)
		}
	}
	container := dig(kinds["Deployment"], "spec", "template", "spec", "containers", 0)
	if p := dig(container, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readiness probe %v", p)
	}
	if p := dig(container, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("liveness probe %v", p)
	}
	// The image's entrypoint is already `consortium serve --listen …`:
	// args would be appended to it.
	if a := dig(container, "args"); a != nil {
		t.Errorf("the container sets args %v", a)
	}

	env := map[string]string{"CONSORTIUM_KEY": "k", "OPENAI_API_KEY": "sk-test"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	inCluster, _ := dig(kinds["ConfigMap"], "data", "consortium.yaml").(string)
	for name, text := range map[string]string{"deploy/consortium.yaml": "", "configmap.yaml": inCluster} {
		if text == "" {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			text = string(data)
		}
		cfg, err := config.Parse([]byte(text), lookup)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg.Store.Backend != "redis" || cfg.Listen != "0.0.0.0:8080" || len(cfg.Auth.Keys) != 1 {
			t.Errorf("%s: store %q, listen %q, %d keys", name, cfg.Store.Backend, cfg.Listen, len(cfg.Auth.Keys))
		}
	}
}

// TestDeployPagesStayOnOneReplica: the web pages keep their sessions in
// each replica's memory (docs/ui.md), so the compose load balancer keeps
// a browser's /ui requests on one replica; round robin would send every
// other page back to the sign-in form.
func TestDeployPagesStayOnOneReplica(t *testing.T) {
	data, err := os.ReadFile("deploy/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(data)
	loc := strings.Index(conf, "location /ui")
	if loc < 0 {
		t.Fatal("deploy/nginx.conf: no location for /ui; its requests go round robin over the replicas")
	}
	pass := conf[loc:]
	pass = pass[strings.Index(pass, "proxy_pass http://")+len("proxy_pass http://"):]
	name := pass[:strings.IndexAny(pass, ";/")]
	up := strings.Index(conf, "upstream "+name+" {")
	if up < 0 {
		t.Fatalf("deploy/nginx.conf: /ui goes to %q, which is no upstream", name)
	}
	block := conf[up : up+strings.Index(conf[up:], "}")]
	if !strings.Contains(block, "ip_hash;") && !strings.Contains(block, "hash ") {
		t.Errorf("deploy/nginx.conf: upstream %s of /ui is not sticky:\n%s", name, block)
	}
}
