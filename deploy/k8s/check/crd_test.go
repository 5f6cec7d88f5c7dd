package check

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The custom resources of the operators deploy/k8s relies on, with exactly
// the fields the manifests use: a field not declared here fails decoding,
// so a typo (or a field the operator does not know) does not pass silently.

type crHeader struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
}

// Strimzi (kafka.strimzi.io/v1beta2).

type kafkaCluster struct {
	crHeader
	Spec struct {
		Kafka struct {
			Version         string          `json:"version"`
			MetadataVersion string          `json:"metadataVersion"`
			Listeners       []kafkaListener `json:"listeners"`
			Authorization   *struct {
				Type       string   `json:"type"`
				SuperUsers []string `json:"superUsers"`
			} `json:"authorization"`
			Config map[string]any `json:"config"`
		} `json:"kafka"`
		EntityOperator struct {
			TopicOperator *struct{} `json:"topicOperator"`
			UserOperator  *struct{} `json:"userOperator"`
		} `json:"entityOperator"`
	} `json:"spec"`
}

type kafkaListener struct {
	Name           string `json:"name"`
	Port           int    `json:"port"`
	Type           string `json:"type"`
	TLS            bool   `json:"tls"`
	Authentication *struct {
		Type string `json:"type"`
	} `json:"authentication"`
	NetworkPolicyPeers []networkingv1.NetworkPolicyPeer `json:"networkPolicyPeers"`
}

type kafkaNodePool struct {
	crHeader
	Spec struct {
		Replicas int      `json:"replicas"`
		Roles    []string `json:"roles"`
		Storage  struct {
			Type    string `json:"type"`
			Volumes []struct {
				ID            int    `json:"id"`
				Type          string `json:"type"`
				Size          string `json:"size"`
				DeleteClaim   bool   `json:"deleteClaim"`
				KraftMetadata string `json:"kraftMetadata"`
			} `json:"volumes"`
		} `json:"storage"`
		Resources corev1.ResourceRequirements `json:"resources"`
	} `json:"spec"`
}

type kafkaTopic struct {
	crHeader
	Spec struct {
		TopicName  string         `json:"topicName"`
		Partitions int            `json:"partitions"`
		Replicas   int            `json:"replicas"`
		Config     map[string]any `json:"config"`
	} `json:"spec"`
}

type kafkaUser struct {
	crHeader
	Spec struct {
		Authentication struct {
			Type string `json:"type"`
		} `json:"authentication"`
		Authorization struct {
			Type string `json:"type"`
			ACLs []struct {
				Resource struct {
					Type        string `json:"type"`
					Name        string `json:"name"`
					PatternType string `json:"patternType"`
				} `json:"resource"`
				Operations []string `json:"operations"`
			} `json:"acls"`
		} `json:"authorization"`
	} `json:"spec"`
}

// CloudNativePG (postgresql.cnpg.io/v1).

type pgCluster struct {
	crHeader
	Spec struct {
		Instances  int    `json:"instances"`
		ImageName  string `json:"imageName"`
		PostgreSQL struct {
			Parameters map[string]string `json:"parameters"`
		} `json:"postgresql"`
		Bootstrap struct {
			InitDB struct {
				Database               string   `json:"database"`
				Owner                  string   `json:"owner"`
				PostInitApplicationSQL []string `json:"postInitApplicationSQL"`
			} `json:"initdb"`
		} `json:"bootstrap"`
		Storage struct {
			Size string `json:"size"`
		} `json:"storage"`
		Resources corev1.ResourceRequirements `json:"resources"`
	} `json:"spec"`
}

// Scylla Operator (scylla.scylladb.com/v1).

type scyllaCluster struct {
	crHeader
	Spec struct {
		Version       string `json:"version"`
		AgentVersion  string `json:"agentVersion"`
		DeveloperMode bool   `json:"developerMode"`
		Datacenter    struct {
			Name  string `json:"name"`
			Racks []struct {
				Name    string `json:"name"`
				Members int    `json:"members"`
				Storage struct {
					Capacity string `json:"capacity"`
				} `json:"storage"`
				Resources corev1.ResourceRequirements `json:"resources"`
			} `json:"racks"`
		} `json:"datacenter"`
	} `json:"spec"`
}

// Prometheus Operator (monitoring.coreos.com/v1).

type podMonitor struct {
	crHeader
	Spec struct {
		Selector            metav1.LabelSelector `json:"selector"`
		PodMetricsEndpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

type serviceMonitor struct {
	crHeader
	Spec struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}
