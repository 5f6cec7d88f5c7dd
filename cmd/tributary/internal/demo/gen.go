// Package demo generates the fraud example's data: users, transactions,
// click events and fraud labels. The same generator feeds the live demo
// workload of `tributary dev` and the training set of `tributary train`, so
// the example model sees in production the distributions it was trained on.
package demo

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// User is a demo user.
type User struct {
	ID      string
	Email   string
	Country string
	Segment string
}

// Txn is a demo transaction with its ground truth.
type Txn struct {
	UserID   string
	Merchant string
	Amount   float64
	Time     time.Time
	Fraud    bool
}

// Label is the transaction's outcome as a model target: 1 for fraud.
func (t Txn) Label() float64 {
	if t.Fraud {
		return 1
	}
	return 0
}

// Click is a demo click event.
type Click struct {
	UserID string
	Page   string
	Time   time.Time
}

var (
	countries = []string{"US", "GB", "DE", "FR", "BR", "IN", "JP", "NG"}
	segments  = []string{"consumer", "consumer", "consumer", "smb", "premium"}
	pages     = []string{"/", "/search", "/product", "/cart", "/checkout", "/account"}
)

// Gen draws demo data from a seeded source: the same seed gives the same data.
type Gen struct {
	r     *rand.Rand
	Users []User
}

// NewGen makes a generator with n users.
func NewGen(seed uint64, n int) *Gen {
	g := &Gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for i := range n {
		id := fmt.Sprintf("u%05d", i+1)
		g.Users = append(g.Users, User{
			ID:      id,
			Email:   id + "@example.com",
			Country: countries[g.r.IntN(len(countries))],
			Segment: segments[g.r.IntN(len(segments))],
		})
	}
	return g
}

// Session is what one user does in a few minutes: browsing clicks followed
// by transactions. A fraudulent session (a stolen card) clicks little and
// makes a burst of large payments at many merchants.
type Session struct {
	Clicks []Click
	Txns   []Txn
}

// FraudRate is the share of fraudulent sessions.
const FraudRate = 0.06

// Session draws one session of a random user starting at start.
func (g *Gen) Session(start time.Time) Session {
	u := g.Users[g.r.IntN(len(g.Users))]
	fraud := g.r.Float64() < FraudRate
	var s Session
	t := start
	nClicks := 3 + g.r.IntN(12)
	if fraud {
		nClicks = g.r.IntN(3)
	}
	for range nClicks {
		t = t.Add(time.Duration(1+g.r.IntN(5)) * time.Second)
		s.Clicks = append(s.Clicks, Click{UserID: u.ID, Page: pages[g.r.IntN(len(pages))], Time: t})
	}
	nTxns := 1 + g.r.IntN(2)
	mu, sigma := 3.4, 0.8 // lognormal around $30
	if fraud {
		nTxns = 3 + g.r.IntN(6)
		mu, sigma = 5.2, 0.7 // around $180
	}
	for range nTxns {
		t = t.Add(time.Duration(2+g.r.IntN(12)) * time.Second)
		amount := math.Round(math.Exp(mu+sigma*g.r.NormFloat64())*100) / 100
		merchant := fmt.Sprintf("m%03d", g.r.IntN(40))
		if fraud {
			merchant = fmt.Sprintf("m%03d", 40+g.r.IntN(160))
		}
		s.Txns = append(s.Txns, Txn{UserID: u.ID, Merchant: merchant, Amount: amount, Time: t, Fraud: fraud})
	}
	return s
}

// Gap draws the time until the next session starts, for sessions arriving
// at rate per second on average.
func (g *Gen) Gap(rate float64) time.Duration {
	return time.Duration(g.r.Float64() * 2 * float64(time.Second) / rate)
}

// Demo traffic: the live workload and the training set share it, so the
// model is trained on the distributions it serves.
const (
	DefaultUsers             = 5000
	DefaultSessionsPerSecond = 10
)
