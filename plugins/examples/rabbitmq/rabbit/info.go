package rabbit

// What the plugin's Info answers (plugins/examples/rabbitmq/main.go passes
// these to the SDK).
const (
	// Name is the plugin's name: `--rotator plugin:rabbitmq`.
	Name = "rabbitmq"
	// Version of the rotator.
	Version = "0.1.0"
	// ConfigExample is a config Info shows to operators.
	ConfigExample = `{"strategy":"admin","admin_secret":"rabbitmq/admin","password":{"length":32},"connect_timeout":"10s"}`
	// ValueExample is the shape of the secret it rotates.
	ValueExample = `{"username":"app","password":"…","host":"127.0.0.1","port":"5672","management_url":"http://127.0.0.1:15672"}`
)

// SecretTypes are the secret types it rotates.
var SecretTypes = []string{SecretType}

// IdentityFields are the fields Target returns, in its order: what
// identifies the target account and how the rotator reaches it. The
// plugin host checks every Target answer against this list.
var IdentityFields = []string{"engine", "host", "port", "management_url", "username", "vhost",
	"sslmode", "sslrootcert", "tls_server_name", "allow_plaintext"}
