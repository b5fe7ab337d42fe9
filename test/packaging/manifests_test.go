package packaging_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// kubeScheme knows the API groups the charts render objects of. An object of another group fails to
// decode: add its group here when a chart starts rendering one.
var kubeScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strictDecoder decodes YAML into the Kubernetes type of its apiVersion and kind, as the API server
// does with fieldValidation=Strict: an unknown, misspelled or duplicated field is an error.
var strictDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, kubeScheme, kubeScheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// manifest is one rendered object, decoded into its k8s.io/api type.
type manifest struct {
	Kind     string
	Metadata *metav1.ObjectMeta // the object's own metadata
	Object   runtime.Object
}

// rendered is the output of helm template, indexed by kind and name.
type rendered map[string]map[string]*manifest

// decodeObjects decodes a multi-document YAML stream of Kubernetes objects strictly.
func decodeObjects(out string) ([]*manifest, error) {
	var objects []*manifest
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(out)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objects, nil
		}
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(stripComments(string(doc))) == "" {
			continue
		}
		obj, gvk, err := strictDecoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%w\n%s", err, doc)
		}
		accessor, ok := obj.(metav1.ObjectMetaAccessor)
		if !ok {
			return nil, fmt.Errorf("%s has no object metadata", gvk)
		}
		meta, ok := accessor.GetObjectMeta().(*metav1.ObjectMeta)
		if !ok {
			return nil, fmt.Errorf("%s: unexpected metadata type %T", gvk, accessor.GetObjectMeta())
		}
		objects = append(objects, &manifest{Kind: gvk.Kind, Metadata: meta, Object: obj})
	}
}

// stripComments drops the comment lines helm template writes (# Source: ...).
func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func decodeManifests(t testing.TB, out string) rendered {
	t.Helper()
	objects, err := decodeObjects(out)
	if err != nil {
		t.Fatalf("rendered manifests do not decode strictly into Kubernetes types: %v", err)
	}
	r := rendered{}
	for _, m := range objects {
		if r[m.Kind] == nil {
			r[m.Kind] = map[string]*manifest{}
		}
		if r[m.Kind][m.Metadata.Name] != nil {
			t.Errorf("%s %s rendered twice", m.Kind, m.Metadata.Name)
		}
		r[m.Kind][m.Metadata.Name] = m
	}
	return r
}

// get returns the object of kind called name, failing the test when it was not rendered.
func (r rendered) get(t testing.TB, kind, name string) *manifest {
	t.Helper()
	m := r[kind][name]
	if m == nil {
		var names []string
		for n := range r[kind] {
			names = append(names, n)
		}
		t.Fatalf("no %s %q rendered (%s: %q)", kind, name, kind, names)
	}
	return m
}

// typed returns the object of kind called name as its k8s.io/api type T.
func typed[T runtime.Object](t testing.TB, r rendered, kind, name string) T {
	t.Helper()
	obj, ok := r.get(t, kind, name).Object.(T)
	if !ok {
		t.Fatalf("%s %s decoded as %T", kind, name, r.get(t, kind, name).Object)
	}
	return obj
}

func (r rendered) configMap(t testing.TB, name string) *corev1.ConfigMap {
	t.Helper()
	return typed[*corev1.ConfigMap](t, r, "ConfigMap", name)
}

func (r rendered) secret(t testing.TB, name string) *corev1.Secret {
	t.Helper()
	return typed[*corev1.Secret](t, r, "Secret", name)
}

func (r rendered) job(t testing.TB, name string) *batchv1.Job {
	t.Helper()
	return typed[*batchv1.Job](t, r, "Job", name)
}

func (r rendered) deployment(t testing.TB, name string) *appsv1.Deployment {
	t.Helper()
	return typed[*appsv1.Deployment](t, r, "Deployment", name)
}

// pod returns the pod spec of a Pod, Job or Deployment.
func (m *manifest) pod() *corev1.PodSpec {
	switch o := m.Object.(type) {
	case *corev1.Pod:
		return &o.Spec
	case *batchv1.Job:
		return &o.Spec.Template.Spec
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec
	}
	panic(fmt.Sprintf("%s %s has no pod spec", m.Kind, m.Metadata.Name))
}

// envVar returns the container's environment variable called name, or nil.
func envVar(c *corev1.Container, name string) *corev1.EnvVar {
	for i := range c.Env {
		if c.Env[i].Name == name {
			return &c.Env[i]
		}
	}
	return nil
}

// envValue returns the literal value of the variable called name, or "" when it is unset or not literal.
func envValue(c *corev1.Container, name string) string {
	if e := envVar(c, name); e != nil {
		return e.Value
	}
	return ""
}

// podVolume returns the pod volume called name, or nil.
func podVolume(p *corev1.PodSpec, name string) *corev1.Volume {
	for i := range p.Volumes {
		if p.Volumes[i].Name == name {
			return &p.Volumes[i]
		}
	}
	return nil
}

func TestManifestDecodingIsStrict(t *testing.T) {
	good := "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n    - {name: c, image: i, readOnly: true}\n"
	for name, doc := range map[string]string{
		"misspelled container field": good,
		"unknown top-level field":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndatas: {a: b}\n",
		"duplicated field":           "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: b}\ndata: {c: d}\n",
		"unknown kind":               "apiVersion: v1\nkind: Podd\nmetadata: {name: p}\n",
		"wrong type":                 "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {backoffLimit: two}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decodeObjects(doc); err == nil {
				t.Errorf("decoded without error:\n%s", doc)
			}
		})
	}
	fixed := strings.Replace(good, "readOnly: true", "imagePullPolicy: Never", 1)
	objects, err := decodeObjects("# Source: x\n---\n" + fixed)
	if err != nil || len(objects) != 1 || objects[0].Kind != "Pod" || objects[0].Metadata.Name != "p" {
		t.Fatalf("a valid Pod: %v, %+v", err, objects)
	}
	if c := objects[0].pod().Containers[0]; c.ImagePullPolicy != corev1.PullNever {
		t.Errorf("imagePullPolicy %q, want Never", c.ImagePullPolicy)
	}
}
