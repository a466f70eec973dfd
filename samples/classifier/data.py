"""Labelled sentences for the sentiment classifier: TRAIN is used by train.py, HELDOUT only by tests."""

POSITIVE = """
I love this product, it works great
What a wonderful experience, highly recommended
The food was delicious and the staff were friendly
This is the best movie I have seen all year
Absolutely fantastic service, thank you
I am very happy with my purchase
The hotel room was clean, bright and comfortable
Excellent quality and fast delivery
The concert was amazing and the crowd was joyful
She did a brilliant job on the project
Great value for money, I would buy it again
The app is simple, fast and delightful to use
Our guide was kind, helpful and fun
I enjoyed every minute of the show
The new update is a huge improvement
Lovely weather and a beautiful view from the terrace
This book is inspiring and well written
The team was supportive and the results were superb
Perfect fit and very comfortable shoes
The coffee here is excellent and the barista is friendly
I had a pleasant stay and would happily return
The instructions were clear and setup was easy
Wonderful cast, great story, beautiful music
Customer support solved my problem quickly, thanks
The garden looks gorgeous this spring
I am thrilled with how the photos turned out
A charming little restaurant with tasty dishes
The kids loved the park, a great day out
Impressive performance and a smooth ride
My favourite album, every song is a joy
The lecture was fascinating and easy to follow
Good battery life and a sharp, bright screen
This recipe is easy and the result is delicious
An outstanding game with a satisfying ending
Friendly neighbours and a calm, happy street
The seats were comfortable and the view was great
I recommend this course, the teacher is excellent
The package arrived early and in perfect condition
Such a fun and cheerful atmosphere
Beautifully made, sturdy and worth every penny
""".strip().splitlines()

NEGATIVE = """
I hate this product, it broke after one day
What a terrible experience, never again
The food was cold and the staff were rude
This is the worst movie I have seen all year
Awful service, I want a refund
I am very disappointed with my purchase
The hotel room was dirty, dark and noisy
Poor quality and the delivery was late
The concert was boring and the sound was bad
He did a sloppy job and missed the deadline
A waste of money, I regret buying it
The app is slow, buggy and frustrating to use
Our guide was rude, unhelpful and late
I hated every minute of the show
The new update is a huge step backwards
Horrible weather and an ugly view of a parking lot
This book is dull and badly written
The team was careless and the results were awful
The shoes are uncomfortable and fell apart
The coffee here is bitter and the barista is rude
I had a miserable stay and will never return
The instructions were confusing and setup was painful
Weak cast, boring story, annoying music
Customer support ignored my problem, useless
The garden looks dead and neglected
I am upset about how badly the photos turned out
A grim restaurant with bland, greasy dishes
The kids were bored and cranky, a wasted day
Disappointing performance and a bumpy ride
My least favourite album, every song is painful
The lecture was tedious and hard to follow
Bad battery life and a dim, scratched screen
This recipe is complicated and the result is disgusting
A broken game with a frustrating ending
Noisy neighbours and an unpleasant, angry street
The seats were cramped and the view was terrible
Avoid this course, the teacher is awful
The package arrived damaged and very late
Such a gloomy and depressing atmosphere
Cheaply made, flimsy and not worth the price
""".strip().splitlines()

TRAIN = [(text, "positive") for text in POSITIVE] + [(text, "negative") for text in NEGATIVE]

# Never seen in training: new sentences built from the same vocabulary of sentiment.
HELDOUT = [
    ("The staff were friendly and the room was comfortable", "positive"),
    ("Excellent book, I enjoyed it and would recommend it", "positive"),
    ("A delightful, beautiful and fun evening", "positive"),
    ("Great shoes, comfortable and worth the price", "positive"),
    ("The support team was kind and helpful", "positive"),
    ("The delivery was late and the box was damaged", "negative"),
    ("Boring, slow and frustrating from start to finish", "negative"),
    ("The waiter was rude and the soup was cold", "negative"),
    ("I regret this purchase, it is useless and broke quickly", "negative"),
    ("Dirty tables, noisy room and terrible coffee", "negative"),
]
