package client_test

// These examples run against a real daemon that TestMain
// (example_main_test.go) starts, as ROTARY_ADDR and ROTARY_TOKEN say.

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
	fmt.Println("using", cur.Name, "version", cur.Version)

	// One field of a JSON value (db-credentials, key-value).
	engine, err := c.Field(ctx, "app/db", "engine")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the database is", engine)
	// Output:
	// using app/api-key version 1
	// the database is postgres
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
	before, err := c.Get(context.Background(), "app/api-key")
	if err != nil {
		log.Fatal(err)
	}

	// Here the example rotates the key itself; usually a schedule or
	// another team does.
	if _, err := c.Rotate(context.Background(), "app/api-key", client.RotateOptions{}); err != nil {
		log.Fatal(err)
	}
	e := <-rotated
	after, err := c.Get(context.Background(), "app/api-key") // already the new value
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Secret, "rotated: version", e.Version, "is current")
	fmt.Println("the cache moved on:", after.Version == e.Version && after.Version > before.Version)
	// Output:
	// app/api-key rotated: version 2 is current
	// the cache moved on: true
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
	user, err := c.Field(context.Background(), "app/db", "username")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("connected as the secret's user:", who == user)
	// Output:
	// connected as the secret's user: true
}
