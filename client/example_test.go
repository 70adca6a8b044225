package client_test

// These examples need a running daemon (rotary server --dev) and a token,
// so they have no Output line: go test compiles them but does not run
// them. e2e/client_test.go, e2e/sqlconn_test.go and e2e/tools_test.go run
// the same calls against real daemons.

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/rotary-secrets/rotary/client"
	"github.com/rotary-secrets/rotary/client/sqlconn"
)

// Get answers from memory, kept fresh by the daemon's events: call it
// whenever the value is needed instead of keeping a copy.
func ExampleClient_Get() {
	c, err := client.New(os.Getenv("ROTARY_ADDR"), client.WithToken(os.Getenv("ROTARY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close() // stops the refresh and wipes the cached values

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, err := c.Get(ctx, "app/api-key")
	if err != nil {
		log.Fatal(err) // names the secret, never a value
	}
	fmt.Println("using version", cur.Version, "of", cur.Name)

	// One field of a JSON value (db-credentials, key-value).
	user, err := c.Field(ctx, "app/db", "username")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("database user", user)
}

// Watch calls a function after each event of matching secrets, once the
// cache holds the version the event made current.
func ExampleClient_Watch() {
	c, err := client.New(os.Getenv("ROTARY_ADDR"), client.WithToken(os.Getenv("ROTARY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	rotated := make(chan client.Event, 1)
	stop, err := c.Watch("app/*", func(e client.Event) {
		if e.Event == "rotated" {
			select {
			case rotated <- e:
			default:
			}
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	defer stop()
	// Events from here on are not missed.
	if err := c.WaitConnected(context.Background()); err != nil {
		log.Fatal(err)
	}
	e := <-rotated
	fmt.Printf("%s rotated to version %d at %s\n", e.Secret, e.Version, e.At.Format(time.RFC3339))
}

// sqlconn opens every new connection of a pool with the current
// credential of a db-credentials secret; a rotation reaches the pool
// without a restart and without failing queries.
func Example_sqlconn() {
	c, err := client.New(os.Getenv("ROTARY_ADDR"), client.WithToken(os.Getenv("ROTARY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	conn, err := sqlconn.New(c, "app/db", "postgres") // or "mysql"
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	db.SetMaxOpenConns(20)
	// Connections are renewed now and then, each with the credential of
	// its time; connections already open keep working after a rotation.
	db.SetConnMaxLifetime(30 * time.Minute)

	var who string
	if err := db.QueryRow("SELECT current_user").Scan(&who); err != nil {
		log.Fatal(err)
	}
	fmt.Println("connected as", who)
}
