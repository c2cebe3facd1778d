package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/mpim/mpim/client"
	mpimv1 "github.com/mpim/mpim/proto/mpim/v1"
)

// Example connects to a gateway, logs a device in, sends a message and
// prints what is pushed to the device. It needs a running gateway, so it
// is compiled but not run by go test.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, "ws://127.0.0.1:8080/ws", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	me, err := c.Login(ctx, &mpimv1.LoginRequest{Username: "amy", Password: "correct horse", DeviceId: "laptop"})
	if err != nil {
		log.Fatal(err) // a *client.ResponseError, such as bad_credentials
	}
	_, err = c.Request(ctx, &mpimv1.ClientFrame_Send{Send: &mpimv1.SendRequest{
		To: &mpimv1.SendRequest_UserId{UserId: me.GetUserId()}, ClientMsgId: "note-1", Text: "a note to self"}})
	if err != nil {
		log.Fatal(err)
	}
	for {
		f, err := c.Next(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if p := f.GetPush(); p != nil {
			ev, err := client.PushEvent(p)
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println(ev.GetMessageSent().GetText())
			if err := c.Ack(ctx, p.GetInboxId()); err != nil {
				log.Fatal(err)
			}
			return
		}
	}
}

// ExampleOpen keeps a device connected: the session reconnects and
// resumes on its own, and acknowledges each push once the handler has
// seen it. It needs a running gateway, so it is compiled but not run.
func ExampleOpen() {
	s, err := client.Open(context.Background(), client.SessionConfig{
		URL:      "ws://127.0.0.1:8080/ws",
		Username: "amy", Password: "correct horse", DeviceID: "laptop",
		Handler: func(f *mpimv1.ServerFrame) {
			if p := f.GetPush(); p != nil {
				fmt.Println("pushed:", p.GetType())
			}
		},
		OnDisconnect: func(err error) { log.Printf("connection lost (%v); reconnecting", err) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	<-s.Done() // replaced or logged out elsewhere
	log.Print(s.Err())
}
